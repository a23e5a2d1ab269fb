package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/txoutbox/outbox/core"
)

// clientOptions are the producer settings every client of the transport uses. The benchmark
// harness builds its raw client from the same list, so they must stay in one place.
//
//   - Idempotent writes (franz-go's default, kept on) with acks from all in-sync replicas: a
//     batch the producer resends after a lost answer is not written twice, and a partition
//     never receives a batch before the one ahead of it.
//   - Manual flushing: a Publish buffers all its records, then flushes. No record of a call is
//     sent before every record of the call is buffered; see Publish for why that matters.
//   - One produce request in flight per broker: a later batch of a partition is never on the
//     wire while an earlier one can still fail, whatever state the broker keeps for the
//     producer.
//   - A delivery timeout, so that an unreachable broker fails a Publish instead of hanging it,
//     and metadata refreshed often enough for a failed batch to be resent or given up in time.
func clientOptions(c Config) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(maxWaveRecords),
		kgo.MaxProduceRequestsInflightPerBroker(1),
		kgo.ProducerBatchMaxBytes(int32(c.MaxMessageBytes)),
		kgo.ProducerBatchCompression(compressionCodec(c.Compression)...),
		kgo.RecordDeliveryTimeout(c.DeliveryTimeout),
		kgo.RetryTimeout(c.DeliveryTimeout),
		// A failed batch waits for fresh metadata before it is resent or given up; the
		// default minimum age (5s) would hold it past a short DeliveryTimeout.
		kgo.MetadataMinAge(min(5*time.Second, c.DeliveryTimeout/2)),
		kgo.DialTimeout(c.DialTimeout),
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(saslMechanism(*c.SASL)))
	}
	return opts
}

// ClientOptions returns the franz-go options the transport's producer clients are built with
// for cfg (after defaults), for a consumer, a tool or a benchmark that must talk to the brokers
// the same way. It validates cfg first.
func ClientOptions(cfg Config) ([]kgo.Opt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return clientOptions(cfg.withDefaults()), nil
}

func saslMechanism(s SASL) sasl.Mechanism {
	switch s.Mechanism {
	case SASLScramSHA256:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	}
	return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
}

// compressionCodec returns the producer's codec preference for a Compression name, or nil for
// an unknown name.
func compressionCodec(name string) []kgo.CompressionCodec {
	switch name {
	case CompressionNone:
		return []kgo.CompressionCodec{kgo.NoCompression()}
	case CompressionGzip:
		return []kgo.CompressionCodec{kgo.GzipCompression()}
	case CompressionSnappy:
		return []kgo.CompressionCodec{kgo.SnappyCompression()}
	case CompressionLZ4:
		return []kgo.CompressionCodec{kgo.Lz4Compression()}
	case CompressionZstd:
		return []kgo.CompressionCodec{kgo.ZstdCompression()}
	}
	return nil
}

// pool holds the producer clients, at most one Publish on each at a time. Clients are made on
// first need, up to Concurrency.
type pool struct {
	opts []kgo.Opt
	sem  chan struct{} // one token per client in use

	mu     sync.Mutex
	idle   []*kgo.Client
	all    []*kgo.Client
	closed bool

	// settling clients have records out from a Publish whose context ended; they rejoin the
	// pool once those records are resolved, or when the pool closes.
	settling sync.WaitGroup
	stop     context.Context
	cancel   context.CancelFunc
}

func newPool(opts []kgo.Opt, size int) *pool {
	stop, cancel := context.WithCancel(context.Background())
	return &pool{opts: opts, sem: make(chan struct{}, size), stop: stop, cancel: cancel}
}

// get returns a client no other Publish is using, waiting for one while ctx allows.
func (p *pool) get(ctx context.Context) (*kgo.Client, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.sem
		return nil, core.ErrClosed
	}
	if n := len(p.idle); n > 0 {
		cl := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return cl, nil
	}
	cl, err := kgo.NewClient(p.opts...)
	if err != nil {
		<-p.sem
		return nil, fmt.Errorf("new producer client: %w", err)
	}
	p.all = append(p.all, cl)
	return cl, nil
}

// put hands back a client whose records are all resolved.
func (p *pool) put(cl *kgo.Client) {
	p.mu.Lock()
	if !p.closed {
		p.idle = append(p.idle, cl)
	}
	p.mu.Unlock()
	<-p.sem
}

// settle hands back a client that still has records out. It rejoins the pool only once they
// are resolved, so that the next Publish on it starts with an empty buffer: its records must
// never share a batch with records of an earlier call.
func (p *pool) settle(cl *kgo.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.sem
		return
	}
	p.settling.Go(func() {
		if cl.Flush(p.stop) == nil {
			p.put(cl)
			return
		}
		<-p.sem // the pool is closing; Close closes the client
	})
}

// close closes every client: records still buffered fail with kgo.ErrClientClosed.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	all := p.all
	p.idle, p.all = nil, nil
	p.mu.Unlock()
	p.cancel()
	p.settling.Wait()
	for _, cl := range all {
		cl.Close()
	}
}
