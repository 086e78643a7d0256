package contexts

import "testing"

// An execution makes a context busy and then active again; a restart
// meanwhile leaves it restarting.
func TestStatusOfAnExecution(t *testing.T) {
	s := &liveContext{status: StatusActive}
	s.busy()
	if s.status != StatusBusy {
		t.Fatalf("after busy: %s", s.status)
	}
	s.executed()
	if s.status != StatusActive || s.executions != 1 {
		t.Errorf("after executed: %s, %d executions", s.status, s.executions)
	}
	s.busy()
	s.kernelRestarted()
	s.executed()
	if s.status != StatusRestarting || !s.unprepared || s.restarts != 1 {
		t.Errorf("restarted during an execution: %s, unprepared %v, %d restarts", s.status, s.unprepared, s.restarts)
	}
}

// Dead is final: nothing that happens to the kernel after brings the
// context back.
func TestDeadIsFinal(t *testing.T) {
	s := &liveContext{status: StatusActive}
	if removed := s.died(); removed {
		t.Error("died reports a removal that did not happen")
	}
	for name, change := range map[string]func(){
		"busy":            s.busy,
		"executed":        s.executed,
		"kernelRestarted": s.kernelRestarted,
		"adopted":         func() { s.adopted(nil) },
	} {
		change()
		if s.status != StatusDead {
			t.Errorf("%s after died: %s", name, s.status)
		}
	}
}
