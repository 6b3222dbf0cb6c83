package main

import (
	"context"
	"errors"
)

// Placeholders replaced by serve.go, check.go, send.go, bench.go, sink.go.
func runServe(ctx context.Context, c *cli, args []string) error { return errors.New("not built yet") }
func runCheck(ctx context.Context, c *cli, args []string) error { return errors.New("not built yet") }
func runSend(ctx context.Context, c *cli, args []string) error  { return errors.New("not built yet") }
func runBench(ctx context.Context, c *cli, args []string) error { return errors.New("not built yet") }
func runSink(ctx context.Context, c *cli, args []string) error  { return errors.New("not built yet") }
