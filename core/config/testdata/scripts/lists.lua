-- A script for the config tests: only its existence is checked here.
function on_data(ctx)
  return nil
end
