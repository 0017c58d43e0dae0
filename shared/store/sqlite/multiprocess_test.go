package sqlite_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// TestSharedDirectoryOpensTogether: several stores (as separate Flowgate
// processes would) open one data directory at the same moment while one of
// them writes; none fails with "database is locked".
func TestSharedDirectoryOpensTogether(t *testing.T) {
	dir := t.TempDir()
	first, err := sqlite.Open(context.Background(), dir)
	require.NoError(t, err)
	defer first.Close()
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Add(1)
	go func() { // keep the database busy with writes
		defer writer.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			now := time.Now().UTC()
			_ = first.CreateBot(context.Background(), store.Bot{ID: "b" + strconv.Itoa(i), Name: "x", CreatedAt: now, UpdatedAt: now})
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := sqlite.Open(context.Background(), dir)
			if err == nil {
				now := time.Now().UTC()
				err = s.CreateBot(context.Background(), store.Bot{ID: "p" + strconv.Itoa(i), Name: "x", CreatedAt: now, UpdatedAt: now})
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(stop)
	writer.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
