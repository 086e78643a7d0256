package contexts

import (
	"slices"
	"testing"
	"testing/synctest"
)

func TestExecutionsTakeTurns(t *testing.T) {
	bubble(t, "one at a time, in arrival order", func(t *testing.T) {
		m, ks := newTestManager(t, newFakeRuntime(nil), testConfig())
		id := mustCreate(t, m).ID
		k := kernelOf(t, ks, id)
		k.holdExecutions()

		codes := []string{"a = 1", "b = 2", "c = 3"}
		var results []<-chan executed
		for _, code := range codes {
			results = append(results, executeAsync(m, id, code))
			synctest.Wait() // each arrives after the one before
		}
		for i := range codes {
			if got := k.executed(); !slices.Equal(got, codes[:i+1]) {
				t.Fatalf("started %q, want %q", got, codes[:i+1])
			}
			k.release <- struct{}{}
			r := <-results[i]
			if r.err != nil || r.Stdout != codes[i] {
				t.Fatalf("execution %d: %+v, %v; want the output of %q", i, r.Execution, r.err, codes[i])
			}
			synctest.Wait()
		}
		if _, _, most, _ := k.stats(); most != 1 {
			t.Errorf("%d executions ran at once, want 1", most)
		}
	})
}
