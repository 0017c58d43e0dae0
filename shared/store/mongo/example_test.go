package mongo_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
)

// ExampleOpen opens the store on a MongoDB wire-protocol server (here
// FerretDB, started in-process) and uses it through the port.
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "flowgate-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	uri, stop, err := ferret.Start(ctx, dir) // in production: FLOWGATE_MONGODB_URI
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := mongo.Open(ctx, uri, "flowgate", mongo.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme support"}); err != nil {
		log.Fatal(err)
	}
	run, created, err := s.CreateRun(ctx, store.Run{ID: "r1", BotID: "acme", TriggerID: "t1", FlowID: "welcome", ContactID: "c1"})
	if err != nil {
		log.Fatal(err)
	}
	_, again, _ := s.CreateRun(ctx, store.Run{ID: "r2", BotID: "acme", TriggerID: "t1", FlowID: "welcome", ContactID: "c1"})
	run.Status = store.RunRunning
	run, err = s.UpdateRun(ctx, run)
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.UpdateRun(ctx, store.Run{ID: "r1", BotID: "acme", Status: store.RunCompleted, Version: 1})
	fmt.Println(created, again, run.Status, run.Version, err != nil)
	// Output: true false running 2 true
}
