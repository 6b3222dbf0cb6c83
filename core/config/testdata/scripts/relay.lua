-- A script for the config tests: only its existence is checked here.
function on_rcpt(ctx)
  return gw.continue()
end
