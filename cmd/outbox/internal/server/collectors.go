package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/txoutbox/outbox"
)

// RelayCollector exposes a relay's counters (outbox.Relay.Stats) at each scrape, so the metrics
// cost nothing on the publish path.
type RelayCollector struct {
	Stats func() outbox.Stats

	claimed, published, failed, dead, released, stale, batches, lag *prometheus.Desc
	transportUp, transportDown                                      *prometheus.Desc
}

// NewRelayCollector returns a collector of stats.
func NewRelayCollector(stats func() outbox.Stats) *RelayCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &RelayCollector{
		Stats:     stats,
		claimed:   d("outbox_relay_claimed_total", "Messages the relay claimed from the store."),
		published: d("outbox_relay_published_total", "Messages published and acknowledged."),
		failed:    d("outbox_relay_failed_total", "Failed publishes that will be retried."),
		dead:      d("outbox_relay_dead_total", "Messages the relay moved to dead."),
		released:  d("outbox_relay_released_total", "Messages handed back without an attempt charged (transport unavailable, stopping, or an earlier message of their key failed)."),
		stale:     d("outbox_relay_stale_total", "Acks and nacks the store ignored because the claim had lost its lease (a sign that the lease is too short)."),
		batches:   d("outbox_relay_batches_total", "Non-empty claims."),
		lag:       d("outbox_relay_lag_seconds", "Age of the oldest message of the last published batch."),
		transportUp: d("outbox_relay_transport_up",
			"1 while the transport is available, 0 while the relay is paused because it is not."),
		transportDown: d("outbox_relay_transport_down_seconds",
			"How long the transport has been unavailable; 0 while it is available."),
	}
}

// Describe implements prometheus.Collector.
func (c *RelayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.claimed, c.published, c.failed, c.dead, c.released, c.stale, c.batches, c.lag, c.transportUp, c.transportDown} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *RelayCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Stats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.claimed, s.Claimed)
	counter(c.published, s.Published)
	counter(c.failed, s.Failed)
	counter(c.dead, s.Dead)
	counter(c.released, s.Released)
	counter(c.stale, s.Stale)
	counter(c.batches, s.Batches)
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(c.lag, s.LastLag.Seconds())
	up, down := 1.0, 0.0
	if !s.TransportDownSince.IsZero() {
		up, down = 0, max(0, time.Since(s.TransportDownSince).Seconds())
	}
	gauge(c.transportUp, up)
	gauge(c.transportDown, down)
}

// StoreCollector exposes the store's own view (outbox.Inspector.Counts) at each scrape: the
// backlog and dead letters that no relay counter can see, such as those left by other relays.
// Counts reads the whole table, so scrape every few seconds, not faster.
type StoreCollector struct {
	Inspector outbox.Inspector
	Timeout   time.Duration

	messages, oldest, up *prometheus.Desc
}

// NewStoreCollector returns a collector of ins's counts, each read bounded by timeout.
func NewStoreCollector(ins outbox.Inspector, timeout time.Duration) *StoreCollector {
	return &StoreCollector{
		Inspector: ins,
		Timeout:   timeout,
		messages:  prometheus.NewDesc("outbox_messages", "Messages in the store by status (delivered only when kept).", []string{"status"}, nil),
		oldest:    prometheus.NewDesc("outbox_oldest_pending_age_seconds", "Age of the oldest pending message; 0 when none.", nil, nil),
		up:        prometheus.NewDesc("outbox_store_up", "1 when the store answered the last scrape's count, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.oldest
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	counts, err := c.Inspector.Counts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	gauge := func(status outbox.Status, v int64) {
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(v), string(status))
	}
	gauge(outbox.StatusPending, counts.Pending)
	gauge(outbox.StatusDelivered, counts.Delivered)
	gauge(outbox.StatusDead, counts.Dead)
	age := 0.0
	if !counts.OldestPending.IsZero() {
		age = max(0, time.Since(counts.OldestPending).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}

// SlotCollector exposes the replication slot of a PostgreSQL store in WAL mode at each scrape:
// how far the slot lags, how much WAL it makes the server keep, and whether this relay holds it
// or stands by.
type SlotCollector struct {
	Slot    func(ctx context.Context) (SlotHealth, error)
	Timeout time.Duration

	up, exists, active, holding, lagBytes, retained, lagSeconds, buffered, alarm *prometheus.Desc
}

// NewSlotCollector returns a collector of slot, each read bounded by timeout.
func NewSlotCollector(slot func(ctx context.Context) (SlotHealth, error), timeout time.Duration) *SlotCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, []string{"slot"}, nil) }
	return &SlotCollector{
		Slot:       slot,
		Timeout:    timeout,
		up:         d("outbox_wal_slot_up", "1 when the last scrape read the replication slot's state, else 0."),
		exists:     d("outbox_wal_slot_exists", "1 when the replication slot exists; 0: WAL-mode writes fail until it is created."),
		active:     d("outbox_wal_slot_active", "1 when some connection reads the replication slot (this relay or another)."),
		holding:    d("outbox_wal_slot_holding", "1 when this relay reads the replication slot, 0 while it stands by."),
		lagBytes:   d("outbox_wal_slot_lag_bytes", "WAL written since the replication slot's confirmed position."),
		retained:   d("outbox_wal_slot_retained_bytes", "WAL the server keeps for the replication slot."),
		lagSeconds: d("outbox_wal_lag_seconds", "Age of the oldest transaction this relay streamed and has not confirmed; 0 when none."),
		buffered:   d("outbox_wal_buffered", "Messages this relay streamed and has not settled."),
		alarm:      d("outbox_wal_slot_alarm", "1 while the replication slot is missing, lost its WAL or lags past the alarm threshold."),
	}
}

// Describe implements prometheus.Collector.
func (c *SlotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.exists, c.active, c.holding, c.lagBytes, c.retained, c.lagSeconds, c.buffered, c.alarm} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SlotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	s, err := c.Slot(ctx)
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, s.Name)
	}
	if err != nil {
		gauge(c.up, 0)
		return
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(c.up, 1)
	gauge(c.exists, flag(s.Exists))
	gauge(c.active, flag(s.Active))
	gauge(c.holding, flag(s.Holding))
	gauge(c.lagBytes, float64(s.LagBytes))
	gauge(c.retained, float64(s.RetainedBytes))
	gauge(c.lagSeconds, s.LagSeconds)
	gauge(c.buffered, float64(s.Buffered))
	gauge(c.alarm, flag(s.Alarm))
}
