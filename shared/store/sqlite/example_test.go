package sqlite_test

import (
	"context"
	"fmt"
	"os"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "flowgate-example")
	defer os.RemoveAll(dir)

	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	run := store.Run{ID: "run-1", BotID: "acme", TriggerID: "trg-1", FlowID: "welcome", ContactID: "c-1"}
	run, created, _ := s.CreateRun(ctx, run)
	fmt.Println(created, run.Status, run.Version)

	// A redelivered trigger creates no second run for the same contact.
	again, created, _ := s.CreateRun(ctx, store.Run{ID: "run-2", BotID: "acme", TriggerID: "trg-1", FlowID: "welcome", ContactID: "c-1"})
	fmt.Println(created, again.ID)

	run.Status = store.RunCompleted
	run, _ = s.UpdateRun(ctx, run)
	fmt.Println(run.Status, run.Version)
	// Output:
	// true created 1
	// false run-1
	// completed 2
}
