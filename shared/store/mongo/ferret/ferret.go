// Package ferret runs FerretDB v1 in-process, backed by SQLite files in a
// directory, so that the Mongo store adapter can be tested (and Flowgate can
// be tried against a MongoDB wire-protocol server) without a MongoDB
// installation. FerretDB is a compatibility target only: it is much slower
// than MongoDB on updates and deletes.
package ferret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Start runs FerretDB with the SQLite handler, storing its databases under
// dir (created if missing), listening on a free port of 127.0.0.1. It returns
// the MongoDB URI to connect to and a stop function that shuts the server
// down and waits for it. The server also stops when ctx ends.
func Start(ctx context.Context, dir string) (uri string, stop func(), err error) {
	if dir == "" {
		return "", nil, errors.New("ferret: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("ferret: %w", err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return "", nil, fmt.Errorf("ferret: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		// FerretDB logs every connection at info level; keep only errors.
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return "", nil, fmt.Errorf("ferret: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(runCtx)
	}()
	// MongoDBURI blocks until the listener is bound, which Run does first.
	uric := make(chan string, 1)
	go func() { uric <- f.MongoDBURI() }()
	select {
	case uri = <-uric:
	case <-done:
		cancel()
		return "", nil, errors.New("ferret: server stopped before listening")
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		return "", nil, errors.New("ferret: server did not start listening within 30s")
	}
	stop = func() {
		cancel()
		<-done
	}
	return uri, stop, nil
}
