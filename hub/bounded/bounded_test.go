package bounded

import (
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	g := New(2)
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	for i := range 3 {
		ok := g.TryGo(func() { started <- struct{}{}; <-release })
		if want := i < 2; ok != want {
			t.Fatalf("TryGo %d = %v, want %v (2 slots)", i+1, ok, want)
		}
	}
	<-started
	<-started
	if g.Close(50 * time.Millisecond) {
		t.Error("Close reported everything returned while two functions run")
	}
	if g.TryGo(func() {}) {
		t.Error("TryGo took work after Close")
	}
	close(release)
	g.Wait()
	if !g.Close(time.Second) {
		t.Error("Close after Wait reported functions still running")
	}
}

func TestGroupFreesSlots(t *testing.T) {
	g := New(1)
	for i := range 3 {
		done := make(chan struct{})
		if !g.TryGo(func() { close(done) }) {
			t.Fatalf("TryGo %d refused with its slot free", i+1)
		}
		<-done
		for deadline := time.Now().Add(time.Second); len(g.slots) > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
}
