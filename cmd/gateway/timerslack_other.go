//go:build !linux

package main

// keepTimerSlack does nothing here: timer slack is Linux's (prctl(2)).
func keepTimerSlack() error { return nil }
