// Package scripts holds the Lua policy scripts that ship with the gateway
// (relay.lua, aliases.lua, lists.lua, translate.lua) and their tests. The
// package has no Go API: its tests load each script the way `gateway serve`
// does (a gateway.hcl with a lua block, core/config, core/lua, the hook
// chain) and drive a real SMTP server with scripted conversations, checking
// the replies and what reached the spool. Each script documents its params,
// stages and an example lua block at its top.
//
// aliases.lua and lists.lua have twins among the plugins (plugins/aliases,
// plugins/lists): twins_test.go runs one table of transcript cases against
// a gateway with the scripts and one with the plugins, so that the two
// forms of each feature keep one behaviour.
package scripts
