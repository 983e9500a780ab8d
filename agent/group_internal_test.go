package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oklog/run"
)

// TestGroupReturnsTheLoopsError: the group returns the error of the actor
// that returns first, so the workers, which end when the loop closes
// jobs, must not return before the group stops. Once they did: Once
// returned nil for files it had given up (TestOnceRefusedKeysDoNotGiveUpOthers
// failed once in make test). The loop here waits a little after closing
// jobs, which lets workers that return at once win every time; the
// outcome asserted does not depend on that wait.
func TestGroupReturnsTheLoopsError(t *testing.T) {
	errLoop := errors.New("the loop's error")
	a := &Agent{cfg: Config{Workers: 4}}
	for i := range 20 {
		var g run.Group
		jobs, results := make(chan job), make(chan result, 4)
		a.addWorkers(&g, context.Background(), jobs, results)
		addComponent(&g, context.Background(), func(ctx context.Context) { <-ctx.Done() }, nil)
		g.Add(func() error {
			close(jobs)
			time.Sleep(10 * time.Millisecond) // widens the window; see above
			return errLoop
		}, func(error) {})
		if err := g.Run(); !errors.Is(err, errLoop) {
			t.Fatalf("run %d: the group returned %v; want the loop's error", i, err)
		}
	}
}
