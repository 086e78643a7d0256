package contexts

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// Past the cap, reserve waits for a release, and fails once the wait is
// over; contexts taken over count even past the cap.
func TestAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(1, time.Minute)
		if err := a.reserve(context.Background()); err != nil {
			t.Fatalf("first reserve: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- a.reserve(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("reserve past the cap returned %v without waiting", err)
		default:
		}
		a.release()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("reserve after a release: %v", err)
			}
		default:
			t.Fatal("reserve still waits after a release")
		}

		a.add()
		a.release()
		start := time.Now()
		if err := a.reserve(context.Background()); Code(err) != CodeTooManyContexts {
			t.Fatalf("reserve with a taken-over context counted: %v, want %s", err, CodeTooManyContexts)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("reserve waited %v, want %v", waited, time.Minute)
		}
	})
}

// Without a cap, reserve never waits.
func TestAdmissionNoCap(t *testing.T) {
	a := newAdmission(0, 0)
	for range 3 {
		if err := a.reserve(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
