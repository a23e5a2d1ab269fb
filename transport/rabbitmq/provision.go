package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
)

// Provisioning defaults, exported so that docs and the CLI cannot drift from them.
const (
	// DefaultExchangeType is the type of an exchange Provision declares.
	DefaultExchangeType = "topic"
	// DefaultDeliveryLimit is the x-delivery-limit Provision gives a quorum queue: how often a
	// message is delivered before it goes to the dead-letter exchange.
	DefaultDeliveryLimit = 5
	// DeadSuffix names the dead-letter exchange and queue of a queue: "<queue>.dead".
	DeadSuffix = ".dead"
)

// ErrConflict marks a Provision error about an object that exists with other settings than
// those asked for. Provision leaves such an object as it is.
var ErrConflict = errors.New("exists with other settings")

// ProvisionConfig says what Provision declares: the exchange a Transport of Transport publishes
// to (when it has one), a durable queue bound to it, and that queue's dead-letter exchange and
// queue. The zero value of every field but Queue means its documented default.
type ProvisionConfig struct {
	// Transport is the Config of the transport that will publish. Its Connection is how
	// Provision connects (a Connection.Conn is used and left open); its Exchange is the exchange declared (none for the default
	// exchange, which routes by queue name), and its RoutingKey gives the binding key.
	Transport Config
	// Queue is the queue a Consumer reads. Required.
	Queue string
	// ExchangeType is the type of the exchange: topic, direct, fanout or headers. Default
	// "topic" (DefaultExchangeType).
	ExchangeType string
	// BindingKey binds Queue to the exchange. Default: the RoutingKey template with each
	// dot-separated word holding {type} or {key} as "#", so "orders.{type}" binds "orders.#"
	// and "{type}" binds "#" (every message of a topic exchange). A direct exchange needs it.
	BindingKey string
	// Classic declares classic queues instead of quorum queues. A classic queue has no
	// delivery limit: a message its consumer keeps failing is redelivered for ever. Default
	// false: quorum queues.
	Classic bool
	// DeliveryLimit is the quorum queue's x-delivery-limit. Default 5 (DefaultDeliveryLimit).
	DeliveryLimit int
	// NoDeadLetter leaves out the dead-letter exchange and queue. Default false: an exchange
	// and a queue "<Queue>.dead" (fanout), named as the queue's x-dead-letter-exchange.
	NoDeadLetter bool
}

// ProvisionObject is one object Provision looked at: kinds "exchange", "queue" and "binding" (a binding's Name is "EXCHANGE -> QUEUE", its Action "bound": AMQP cannot tell whether it was there).
type ProvisionObject = outbox.ProvisionObject

// ProvisionReport lists what Provision declared and what it found.
type ProvisionReport struct {
	Objects []ProvisionObject `json:"objects"`
}

// ProvisionPlan is what Provision declares, in the layout of RabbitMQ's definitions file
// (rabbitmqctl import_definitions, the management API's /api/definitions).
type ProvisionPlan struct {
	Exchanges []PlanExchange `json:"exchanges"`
	Queues    []PlanQueue    `json:"queues"`
	Bindings  []PlanBinding  `json:"bindings"`
}

// PlanExchange is an exchange of a ProvisionPlan.
type PlanExchange struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// PlanQueue is a queue of a ProvisionPlan.
type PlanQueue struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

// PlanBinding is a binding of a queue to an exchange in a ProvisionPlan.
type PlanBinding struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// Plan validates c and returns what Provision would declare, without connecting.
func (c ProvisionConfig) Plan() (ProvisionPlan, error) {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq provision", Field: field, Problem: problem}
	}
	if err := c.Transport.Validate(); err != nil {
		return ProvisionPlan{}, err
	}
	t := c.Transport.withDefaults()
	kind := c.ExchangeType
	if kind == "" {
		kind = DefaultExchangeType
	}
	switch {
	case c.Queue == "":
		return ProvisionPlan{}, bad("Queue", "is empty")
	case len(c.Queue)+len(DeadSuffix) > maxShortString:
		return ProvisionPlan{}, bad("Queue", fmt.Sprintf("is %d bytes; with %q it would be above the AMQP limit of %d", len(c.Queue), DeadSuffix, maxShortString))
	case strings.HasPrefix(c.Queue, "amq."):
		return ProvisionPlan{}, bad("Queue", "starts with amq., which the broker reserves")
	case kind != "topic" && kind != "direct" && kind != "fanout" && kind != "headers":
		return ProvisionPlan{}, bad("ExchangeType", fmt.Sprintf("%q is not topic, direct, fanout or headers", kind))
	case c.DeliveryLimit < 0:
		return ProvisionPlan{}, bad("DeliveryLimit", "is negative")
	case c.DeliveryLimit > 0 && c.Classic:
		return ProvisionPlan{}, bad("DeliveryLimit", "is set with Classic (a classic queue has no delivery limit)")
	case len(c.BindingKey) > maxShortString:
		return ProvisionPlan{}, bad("BindingKey", fmt.Sprintf("is above the AMQP limit of %d bytes", maxShortString))
	}
	vhost := "/"
	if u, err := url.Parse(t.URL.Reveal()); err == nil && len(u.Path) > 1 {
		vhost, _ = url.PathUnescape(u.Path[1:])
	}
	if t.Conn != nil && t.Conn.Config.Vhost != "" {
		vhost = t.Conn.Config.Vhost
	}
	var p ProvisionPlan
	args := map[string]any{}
	if !c.Classic {
		args["x-queue-type"] = "quorum"
		limit := c.DeliveryLimit
		if limit == 0 {
			limit = DefaultDeliveryLimit
		}
		args["x-delivery-limit"] = limit
	}
	if !c.NoDeadLetter {
		dead := c.Queue + DeadSuffix
		args["x-dead-letter-exchange"] = dead
		deadArgs := map[string]any{}
		if !c.Classic {
			deadArgs["x-queue-type"] = "quorum"
		}
		p.Exchanges = append(p.Exchanges, PlanExchange{Name: dead, VHost: vhost, Type: "fanout", Durable: true, Arguments: map[string]any{}})
		p.Queues = append(p.Queues, PlanQueue{Name: dead, VHost: vhost, Durable: true, Arguments: deadArgs})
		p.Bindings = append(p.Bindings, PlanBinding{Source: dead, VHost: vhost, Destination: dead, DestinationType: "queue", Arguments: map[string]any{}})
	}
	p.Queues = append(p.Queues, PlanQueue{Name: c.Queue, VHost: vhost, Durable: true, Arguments: args})
	if t.Exchange != "" {
		if !strings.HasPrefix(t.Exchange, "amq.") { // the broker's own, which exist
			p.Exchanges = append(p.Exchanges, PlanExchange{Name: t.Exchange, VHost: vhost, Type: kind, Durable: true, Arguments: map[string]any{}})
		}
		key := c.BindingKey
		if key == "" {
			key = bindingKey(t.RoutingKey)
		}
		p.Bindings = append(p.Bindings, PlanBinding{Source: t.Exchange, VHost: vhost, Destination: c.Queue, DestinationType: "queue", RoutingKey: key, Arguments: map[string]any{}})
	}
	return p, nil
}

// bindingKey turns a routing key template into the topic binding key that matches what it makes.
func bindingKey(tmpl string) string {
	words := strings.Split(tmpl, ".")
	var out []string
	for _, w := range words {
		if strings.Contains(w, "{type}") || strings.Contains(w, "{key}") {
			w = "#"
		}
		if w == "#" && len(out) > 0 && out[len(out)-1] == "#" {
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, ".")
}

// Provision declares the exchange, queues and bindings of c, durable, unless they exist. It is
// idempotent. An exchange or queue that exists with other settings (the broker refuses the
// declaration as not equivalent: another type, queue type, or dead-letter exchange) is left as
// it is, reported as a conflict, and the error, which wraps ErrConflict, quotes the broker.
// A broker that cannot be reached is an error marked outbox.Unavailable.
func Provision(ctx context.Context, c ProvisionConfig) (ProvisionReport, error) {
	var rep ProvisionReport
	p, err := c.Plan()
	if err != nil {
		return rep, err
	}
	t := c.Transport.withDefaults().Connection
	conn := t.Conn // a connection the service gave: its channels are closed, never it
	if conn == nil {
		tc, err := tlsConfig(t)
		if err != nil {
			return rep, err
		}
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName(t.ConnectionName)
		conn, err = amqp.DialConfig(string(t.URL), amqp.Config{
			Heartbeat: t.Heartbeat, TLSClientConfig: tc, Properties: props,
			Dial: amqp.DefaultDial(t.DialTimeout),
		})
		if err != nil {
			return rep, classify("provision: connect to "+t.URL.String(), scrub(t, err))
		}
		// The connection was only for this provisioning: closing it changes nothing declared.
		defer func() { _ = conn.Close() }()
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		defer stop()
	} else if conn.IsClosed() {
		return rep, classify("provision: connect to "+t.addr(), errConnClosed)
	}

	// A failed declaration closes its channel, so each check runs on a channel of its own.
	declare := func(do func(ch *amqp.Channel) error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if t.Conn != nil { // the service's connection stays open: ctx ends the channel
			stop := context.AfterFunc(ctx, func() { _ = ch.Close() })
			defer stop()
		}
		err = do(ch)
		if err == nil {
			_ = ch.Close()
		}
		return err
	}
	exists := func(do func(ch *amqp.Channel) error) (bool, error) {
		err := declare(do)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return false, nil
		}
		return err == nil, err
	}
	var conflicts []string
	// settle declares an object after looking for it, and notes the outcome.
	settle := func(kind, name, detail string, passive, active func(ch *amqp.Channel) error) error {
		o := ProvisionObject{Kind: kind, Name: name, Detail: detail}
		found, err := exists(passive)
		if err != nil {
			return classify("provision: look up "+kind+" "+name, scrub(t, err))
		}
		err = declare(active)
		var ae *amqp.Error
		switch {
		case err == nil && found:
			o.Action = "exists"
		case err == nil:
			o.Action = "created"
		case errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed:
			o.Action, o.Detail = "conflict", ae.Reason
			conflicts = append(conflicts, kind+" "+name+": "+ae.Reason)
		default:
			return classify("provision: declare "+kind+" "+name, scrub(t, err))
		}
		rep.Objects = append(rep.Objects, o)
		return nil
	}

	for _, x := range p.Exchanges {
		err := settle("exchange", x.Name, x.Type,
			func(ch *amqp.Channel) error {
				return ch.ExchangeDeclarePassive(x.Name, x.Type, true, false, false, false, nil)
			},
			func(ch *amqp.Channel) error {
				return ch.ExchangeDeclare(x.Name, x.Type, true, false, false, false, nil)
			})
		if err != nil {
			return rep, err
		}
	}
	for _, q := range p.Queues {
		err := settle("queue", q.Name, queueDetail(q.Arguments),
			func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive(q.Name, true, false, false, false, nil)
				return err
			},
			func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclare(q.Name, true, false, false, false, amqp.Table(q.Arguments))
				return err
			})
		if err != nil {
			return rep, err
		}
	}
	if len(conflicts) > 0 {
		return rep, fmt.Errorf("rabbitmq: provision: %s: %w (left as it is)", strings.Join(conflicts, "; "), ErrConflict)
	}
	for _, b := range p.Bindings {
		o := ProvisionObject{Kind: "binding", Name: b.Source + " -> " + b.Destination, Action: "bound", Detail: "key " + quoteKey(b.RoutingKey)}
		if err := declare(func(ch *amqp.Channel) error { return ch.QueueBind(b.Destination, b.RoutingKey, b.Source, false, nil) }); err != nil {
			return rep, classify("provision: bind "+o.Name, scrub(t, err))
		}
		rep.Objects = append(rep.Objects, o)
	}
	return rep, nil
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	return k
}

func queueDetail(args map[string]any) string {
	var d []string
	if args["x-queue-type"] == "quorum" {
		d = append(d, "quorum")
	} else {
		d = append(d, "classic")
	}
	d = append(d, "durable")
	if l, ok := args["x-delivery-limit"]; ok {
		d = append(d, fmt.Sprintf("delivery limit %v", l))
	}
	if x, ok := args["x-dead-letter-exchange"]; ok {
		d = append(d, fmt.Sprintf("dead letters to %v", x))
	}
	return strings.Join(d, ", ")
}
