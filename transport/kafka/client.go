package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// clientOptions are the producer settings every client of the transport uses. The benchmark
// harness builds its raw client from the same list, so they must stay in one place.
//
//   - Idempotent writes (franz-go's default, kept on) with acks from all in-sync replicas: a
//     batch the producer resends after a lost answer is not written twice, and a partition
//     never receives a batch before the one ahead of it.
//   - Manual flushing: records are sent only when the transport flushes, which it does only
//     once every record of the calls being flushed is buffered (and the lane's gate holds any
//     write until then); see publication for why that matters.
//   - A delivery timeout, so that an unreachable broker fails a Publish instead of hanging it,
//     and metadata refreshed often enough for a failed batch to be resent or given up in time.
func clientOptions(c Config) []kgo.Opt {
	opts := producerOptions(c)
	opts = append(opts, kgo.DialTimeout(c.DialTimeout))
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	return opts
}

// laneOptions are clientOptions for one of the transport's lanes: its connections are dialed
// behind the lane's gate.
func laneOptions(c Config, g *gate) []kgo.Opt {
	return append(producerOptions(c), kgo.Dialer(dialer(c, g)))
}

// producerOptions are clientOptions without the dialing settings.
func producerOptions(c Config) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(maxWaveRecords),
		kgo.ProducerBatchMaxBytes(int32(c.MaxMessageBytes)),
		kgo.ProducerBatchCompression(compressionCodec(c.Compression)...),
		kgo.RecordDeliveryTimeout(c.DeliveryTimeout),
		kgo.RetryTimeout(c.DeliveryTimeout),
		// A failed batch waits for fresh metadata before it is resent or given up; the
		// default minimum age (5s) would hold it past a short DeliveryTimeout.
		kgo.MetadataMinAge(min(5*time.Second, c.DeliveryTimeout/2)),
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(saslMechanism(*c.SASL)))
	}
	return opts
}

// ClientOptions returns the franz-go options the transport's producer clients are built with
// for cfg (after defaults), for a consumer, a tool or a benchmark that must talk to the brokers
// the same way. They include manual flushing: a client that produces with them sends nothing
// until it calls Flush. It validates cfg first.
func ClientOptions(cfg Config) ([]kgo.Opt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return clientOptions(cfg.withDefaults()), nil
}

func saslMechanism(s SASL) sasl.Mechanism {
	switch s.Mechanism {
	case SASLScramSHA256:
		return scram.Auth{User: s.User, Pass: s.Password.Reveal()}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.User, Pass: s.Password.Reveal()}.AsSha512Mechanism()
	}
	return plain.Auth{User: s.User, Pass: s.Password.Reveal()}.AsMechanism()
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
