package contexts

import "sync"

// The types of events subscribers receive.
const (
	EventContextCreated    = "context.created"
	EventContextDeleted    = "context.deleted"
	EventExecutionStarted  = "execution.started"
	EventExecutionFinished = "execution.finished"
)

// Event is something that happened to a context.
type Event struct {
	Type      string
	ContextID string
	Info      *Info  // context.created
	Kind      string // execution.started: KindExecution or KindCommand
	Code      string // execution.started of an execution
	Command   string // execution.started of a command
	Entry     *Entry // execution.finished
}

// subscriberQueue is how many events wait for a subscriber before it is
// dropped: one that does not keep up is cut off, never waited for.
const subscriberQueue = 256

// broker hands events to its subscribers without ever blocking.
type broker struct {
	mu     sync.Mutex
	subs   map[chan Event]struct{}
	closed bool
}

func (b *broker) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, subscriberQueue)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	if b.subs == nil {
		b.subs = map[chan Event]struct{}{}
	}
	b.subs[ch] = struct{}{}
	return ch, func() { b.drop(ch) }
}

// drop ends ch's subscription, once.
func (b *broker) drop(ch chan Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			// Fallen behind: its stream ends, and it can tell by the close.
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// close ends every subscription, and refuses new ones.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}

// Subscribe returns a channel of the events of every context, and the
// function that ends the subscription. The channel is closed when the
// subscription ends: by that function, by EndEvents, or because the
// subscriber fell subscriberQueue events behind.
func (m *Manager) Subscribe() (<-chan Event, func()) { return m.events.subscribe() }

// EndEvents ends every subscription, for a daemon shutting down: the
// streams of events would otherwise never end.
func (m *Manager) EndEvents() { m.events.close() }
