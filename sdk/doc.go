// Package sdk is what a plugin author imports: the decision model (Verdict,
// Decision, Effects and their constructors) shared by the gateway's hook
// engine, Lua scripts and out-of-process plugins. It imports nothing from
// the gateway's core packages, so a plugin needs only this module path.
package sdk
