hostname = "mx.example.test"
domains  = ["example.test"]
