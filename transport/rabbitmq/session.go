package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
)

// session is one connection to the broker and its confirm-mode channel. Every Publish of a
// Transport shares it; a session whose channel or connection closed is lost for good, and the
// next Publish opens a new one.
//
// The broker answers each basic.publish on a confirm-mode channel with a basic.ack or
// basic.nack carrying the message's delivery tag, and sends an unroutable mandatory message
// back with basic.return before acknowledging it. One goroutine (listen) reads both, in that
// order, and resolves the waiting Publish calls.
type session struct {
	conn     *amqp.Connection
	owned    bool // conn was dialed for this session, not given as Connection.Conn
	ch       *amqp.Channel
	maxBytes *atomic.Int64 // the transport's size bound, lowered to the broker's when it reports one

	// writing is held (a one-slot semaphore, so a waiter can give up with its ctx) while one
	// Publish writes basic.publish frames on ch: the delivery tag a message gets is then known,
	// and registered in pending, before its confirm can arrive.
	writing chan struct{}

	mu        sync.Mutex
	pending   map[uint64]*waiter // delivery tag -> the message waiting for its confirm
	exchanges map[string]bool    // exchanges checked to exist on this connection
	blockedCh chan struct{}      // closed while the broker blocks the connection

	blocked atomic.Pointer[string] // the broker's reason while it blocks the connection
	lost    chan struct{}          // closed once the channel is gone and every pending message failed
	lostErr error                  // why, set before lost is closed
	done    chan struct{}          // listen returned
}

// waiter is one published message waiting for its confirm.
type waiter struct {
	r        *round
	i        int // index in the round
	id       string
	size     int
	returned *amqp.Return
}

// round is a set of messages published together and confirmed as a whole.
type round struct {
	mu       sync.Mutex
	errs     []error
	resolved []bool
	left     int
	done     chan struct{}
}

func newRound(n int) *round {
	r := &round{errs: make([]error, n), resolved: make([]bool, n), left: n, done: make(chan struct{})}
	if n == 0 {
		close(r.done)
	}
	return r
}

// resolve records the outcome of message i, once; later outcomes are ignored.
func (r *round) resolve(i int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resolved[i] {
		return
	}
	r.resolved[i], r.errs[i] = true, err
	if r.left--; r.left == 0 {
		close(r.done)
	}
}

// settle fails every unresolved message with err and returns every message's outcome.
func (r *round) settle(err error) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]error, len(r.errs))
	for i := range r.errs {
		if !r.resolved[i] {
			r.resolved[i], r.errs[i] = true, err
			r.left--
		}
		out[i] = r.errs[i]
	}
	return out
}

// dial opens a session. Its errors are classified.
func (t *Transport) dial(ctx context.Context) (*session, error) {
	conn, owned, err := t.cfg.open(ctx, t.tls)
	if err != nil {
		return nil, classify("connect to "+t.addr, scrub(t.cfg.Connection, err))
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		if owned {
			_ = conn.Close()
		} else if ch != nil {
			closeChannel(ch)
		}
		return nil, classify("open confirm channel", scrub(t.cfg.Connection, err))
	}
	s := &session{
		conn: conn, owned: owned, ch: ch, maxBytes: &t.maxBytes,
		pending:   map[uint64]*waiter{},
		exchanges: map[string]bool{"": true}, // the default exchange always exists
		writing:   make(chan struct{}, 1),
		blockedCh: make(chan struct{}),
		lost:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	// The library delivers each notification from its reader goroutine and blocks until it is
	// taken; listen always takes them, and never calls into the channel, so none can deadlock.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1024))
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go s.listen(confirms, returns, blocks, chClosed, connClosed)
	return s, nil
}

// boundedConn bounds every write: a broker that stops reading (it does while it blocks
// publishers, or when it hangs) would otherwise hold a Publish in a socket write that no
// context can interrupt. A write that times out closes the connection, failing whatever waits
// for a confirm, and the next Publish dials again.
type boundedConn struct {
	net.Conn
	timeout time.Duration
}

func (c *boundedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// listen resolves waiting messages from the broker's confirms and returns until the channel
// closes, then fails whatever is still waiting.
func (s *session) listen(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return, blocks <-chan amqp.Blocking, chClosed, connClosed <-chan *amqp.Error) {
	defer close(s.done)
	if !s.owned {
		// A given connection outlives the session, and the library waits on every channel
		// registered with NotifyBlocked: take its notifications until it closes.
		all := blocks
		defer func() {
			go func() {
				for range all {
				}
			}()
		}()
	}
	var cause *amqp.Error
	note := func(e *amqp.Error, ok bool) {
		if ok && e != nil && (cause == nil || e.Code != amqp.ChannelError) {
			cause = e
		}
	}
	for {
		select {
		case c, ok := <-confirms:
			if !ok {
				// The library closes confirms last when the channel shuts down: every confirm the
				// broker sent has been seen, and whatever still waits will never be confirmed.
				s.drainReturns(returns)
				for _, ch := range []<-chan *amqp.Error{chClosed, connClosed} {
					select {
					case e, ok := <-ch:
						note(e, ok)
					default:
					}
				}
				s.abandon(cause)
				return
			}
			// A message's basic.return precedes its ack, and the library hands both over from
			// one goroutine in that order: whatever was returned before this confirm is queued
			// in returns now.
			s.drainReturns(returns)
			s.confirm(c)
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.returned(r)
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			s.setBlocked(b)
		case e, ok := <-chClosed:
			note(e, ok)
			chClosed = nil
		case e, ok := <-connClosed:
			note(e, ok)
			connClosed = nil
		}
	}
}

func (s *session) drainReturns(returns <-chan amqp.Return) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			s.returned(r)
		default:
			return
		}
	}
}

// returned marks the earliest waiting message with the returned message's ID. The broker keeps
// a channel's order, so with several messages of one ID waiting the earliest is the one.
func (s *session) returned(r amqp.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best uint64
	for tag, w := range s.pending {
		if w.id == r.MessageId && w.returned == nil && (best == 0 || tag < best) {
			best = tag
		}
	}
	if best != 0 {
		s.pending[best].returned = &r
	}
}

func (s *session) confirm(c amqp.Confirmation) {
	s.mu.Lock()
	w := s.pending[c.DeliveryTag]
	delete(s.pending, c.DeliveryTag)
	s.mu.Unlock()
	if w == nil {
		return
	}
	var err error
	switch {
	case !c.Ack:
		err = outbox.Unavailable(fmt.Errorf("rabbitmq: message %s: the broker refused it (basic.nack: a queue is full with x-overflow=reject-publish, or the broker failed to store it)", w.id))
	case w.returned != nil:
		err = outbox.Unavailable(fmt.Errorf("rabbitmq: message %s: unroutable: exchange %q returned it for routing key %q: %d %s (no queue is bound for it)",
			w.id, w.returned.Exchange, w.returned.RoutingKey, w.returned.ReplyCode, w.returned.ReplyText))
	}
	w.r.resolve(w.i, err)
}

// abandon fails every message still waiting for a confirm: the channel is gone, so the broker
// will never say whether it took them. They are reported failed, never published; the relay
// publishes them again, which may duplicate some (promise 3), never lose them.
func (s *session) abandon(cause *amqp.Error) {
	err := ErrConnectionLost
	if cause != nil {
		err = cause
	}
	limit, tooBig := maxSizeOf(cause)
	if tooBig && int64(limit) < s.maxBytes.Load() {
		s.maxBytes.Store(int64(limit)) // later messages above it fail before they are sent
	}
	s.mu.Lock()
	pending := s.pending
	s.pending = map[uint64]*waiter{}
	s.lostErr = classify("publish", fmt.Errorf("%w before the broker confirmed the message: %w", ErrConnectionLost, err))
	s.mu.Unlock()
	for _, w := range pending {
		if tooBig && w.size > limit {
			w.r.resolve(w.i, outbox.Permanent(fmt.Errorf("rabbitmq: message %s: body of %d bytes is above the broker's max_message_size (%d): %v", w.id, w.size, limit, cause)))
			continue
		}
		w.r.resolve(w.i, s.lostErr)
	}
	close(s.lost)
}

func (s *session) setBlocked(b amqp.Blocking) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.Active {
		if s.blocked.Load() == nil {
			reason := b.Reason
			s.blocked.Store(&reason)
			close(s.blockedCh)
		}
		return
	}
	if s.blocked.Load() != nil {
		s.blocked.Store(nil)
		s.blockedCh = make(chan struct{})
	}
}

// blockedError is the error of a message not sent, or not confirmed, while the broker blocks
// the connection (a memory or disk alarm).
func (s *session) blockedError() error {
	reason := "no reason given"
	if r := s.blocked.Load(); r != nil && *r != "" {
		reason = *r
	}
	return outbox.Unavailable(fmt.Errorf("rabbitmq: publish: %w: %s", ErrBlocked, reason))
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// closeTimeout bounds the wait for the broker's close-ok, so closing a connection whose broker
// stopped answering does not hang until the heartbeat gives up.
const closeTimeout = 2 * time.Second

// close closes the connection (only the channel of a given one) and waits for listen to
// finish.
func (s *session) close() {
	if s.owned {
		_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
		<-s.done
		return
	}
	closeChannel(s.ch)
	select {
	case <-s.done:
	case <-time.After(closeTimeout): // the broker never answered; the connection's heartbeat ends it
	}
}

// checkExchange reports whether exchange exists, asking the broker once per connection with a
// passive declare on a channel of its own: publishing to a missing exchange would make the
// broker close the shared channel, failing every Publish in flight.
func (s *session) checkExchange(exchange string) error {
	s.mu.Lock()
	known := s.exchanges[exchange]
	s.mu.Unlock()
	if known {
		return nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return classify("check exchange "+exchange, err)
	}
	err = ch.ExchangeDeclarePassive(exchange, amqp.ExchangeDirect, false, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return outbox.Unavailable(fmt.Errorf("rabbitmq: exchange %q does not exist (declare it, or fix Exchange or Route): %w", exchange, err))
		}
		return classify("check exchange "+exchange, err)
	}
	_ = ch.Close()
	s.mu.Lock()
	s.exchanges[exchange] = true
	s.mu.Unlock()
	return nil
}

// send publishes outs on the confirm channel and waits until the broker confirmed each, ctx
// ended, the broker blocked the connection, or the channel closed. It returns each message's
// outcome: nil only for a message the broker acknowledged and did not return.
func (s *session) send(ctx context.Context, outs []outgoing) []error {
	r := newRound(len(outs))
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return r.settle(fmt.Errorf("rabbitmq: publish: waiting for the channel: %w", ctx.Err()))
	}
	for j, o := range outs {
		var err error
		switch {
		case s.blocked.Load() != nil:
			err = s.blockedError()
		case ctx.Err() != nil:
			err = fmt.Errorf("rabbitmq: publish: %w", ctx.Err())
		}
		if err == nil {
			tag := s.ch.GetNextPublishSeqNo()
			s.mu.Lock()
			s.pending[tag] = &waiter{r: r, i: j, id: o.pub.MessageId, size: len(o.pub.Body)}
			s.mu.Unlock()
			if err = s.ch.Publish(o.exchange, o.key, true, false, o.pub); err != nil {
				s.mu.Lock()
				delete(s.pending, tag)
				s.mu.Unlock()
				err = classify("publish", err)
			}
		}
		if err != nil {
			for k := j; k < len(outs); k++ {
				r.resolve(k, err)
			}
			break
		}
	}
	<-s.writing

	s.mu.Lock()
	blockedCh := s.blockedCh
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.settle(nil)
	case <-ctx.Done():
		return r.settle(fmt.Errorf("rabbitmq: publish: waiting for the broker's confirm: %w", ctx.Err()))
	case <-blockedCh:
		// The broker stopped reading from this connection; waiting would only run into the
		// publish timeout. The broker may still take these messages once the alarm clears:
		// publishing them again then duplicates them, which promise 3 allows.
		return r.settle(s.blockedError())
	}
}
