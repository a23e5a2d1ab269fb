package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
)

// Provisioning defaults, exported so that docs and the CLI cannot drift from them.
const (
	// DefaultMaxReceiveCount is how often a message is received before SQS moves it to the
	// dead-letter queue (the RedrivePolicy's maxReceiveCount).
	DefaultMaxReceiveCount = 5
	// DeadSuffix names a queue's dead-letter queue: "<name>-dead", or "<name>-dead.fifo".
	DeadSuffix = "-dead"
	// DeadRetention is the MessageRetentionPeriod of a dead-letter queue Provision creates: the
	// SQS maximum, 14 days, so a dead letter outlives its original's retention.
	DeadRetention = 14 * 24 * time.Hour
)

// ErrConflict marks a Provision error about a queue that exists with other settings than those
// asked for. Provision leaves such a queue as it is.
var ErrConflict = errors.New("exists with other settings")

// ProvisionConfig says what Provision creates: the queue a Transport of Transport publishes to,
// standard or FIFO by its name, and its dead-letter queue with a redrive policy. The zero value
// of every field means its documented default.
type ProvisionConfig struct {
	// Transport is the Config of the transport that will publish. Its credential, region and
	// endpoint fields (or its AWSConfig or Client) are how Provision connects; its QueueURL
	// names the queue when Queue is empty.
	Transport Config
	// Queue is the queue's name; one ending in .fifo makes a FIFO queue, with
	// ContentBasedDeduplication off (the transport sends a deduplication ID). Default the last
	// part of Transport.QueueURL; one of them is required.
	Queue string
	// VisibilityTimeout is the queue's visibility timeout, whole seconds. Default 30s (the
	// consumer's DefaultVisibilityTimeout, and the SQS default).
	VisibilityTimeout time.Duration
	// MaxReceiveCount is the redrive policy's maxReceiveCount. Default 5
	// (DefaultMaxReceiveCount).
	MaxReceiveCount int
	// NoDeadLetter leaves out the dead-letter queue and the redrive policy. Default false: a
	// queue "<name>-dead" ("<name>-dead.fifo" for FIFO) with 14 days' retention.
	NoDeadLetter bool
}

// ProvisionObject is one object Provision looked at: kinds "queue" and "dead-letter queue", with their URL.
type ProvisionObject = outbox.ProvisionObject

// ProvisionReport lists what Provision created and what it found, and the queue's URL.
type ProvisionReport struct {
	Objects []ProvisionObject `json:"objects"`
	// QueueURL is the URL of the queue, for the transport's and the consumer's QueueURL.
	QueueURL string `json:"queue_url,omitempty"`
}

// ProvisionPlan is what Provision creates: CreateQueue's names and attributes, the dead-letter
// queue first. The RedrivePolicy's deadLetterTargetArn names the dead-letter queue, whose ARN
// is known only once it exists.
type ProvisionPlan struct {
	Queues []PlanQueue `json:"queues"`
}

// PlanQueue is one CreateQueue of a ProvisionPlan.
type PlanQueue struct {
	Name       string            `json:"QueueName"`
	Attributes map[string]string `json:"Attributes"`
	// DeadLetterQueue is the queue whose ARN goes in the RedrivePolicy, with MaxReceiveCount.
	DeadLetterQueue string `json:"DeadLetterQueue,omitempty"`
	MaxReceiveCount int    `json:"MaxReceiveCount,omitempty"`
}

// Plan validates c and returns what Provision would create, without connecting.
func (c ProvisionConfig) Plan() (ProvisionPlan, error) {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "sqs provision", Field: field, Problem: problem}
	}
	t := c.Transport
	name := c.Queue
	if name == "" && t.QueueURL != "" {
		name = path.Base(strings.TrimRight(t.QueueURL, "/"))
	}
	if t.QueueURL == "" {
		t.QueueURL = name // Validate wants a destination
	}
	if err := t.Validate(); err != nil {
		return ProvisionPlan{}, err
	}
	fifo := strings.HasSuffix(name, ".fifo")
	dead := strings.TrimSuffix(name, ".fifo") + DeadSuffix
	if fifo {
		dead += ".fifo"
	}
	switch {
	case name == "":
		return ProvisionPlan{}, bad("Queue", "is empty (and so is Transport.QueueURL)")
	case !queueName.MatchString(name):
		return ProvisionPlan{}, bad("Queue", fmt.Sprintf("%s is not a queue name (1-80 of A-Z a-z 0-9 _ -, optionally ending in .fifo)", quoteName(name)))
	case !c.NoDeadLetter && !queueName.MatchString(dead):
		return ProvisionPlan{}, bad("Queue", fmt.Sprintf("is too long for its dead-letter queue %s (80 characters at most)", quoteName(dead)))
	case c.VisibilityTimeout < 0 || c.VisibilityTimeout > MaxVisibilityTimeout:
		return ProvisionPlan{}, bad("VisibilityTimeout", fmt.Sprintf("%v is not between 0 and %v", c.VisibilityTimeout, MaxVisibilityTimeout))
	case c.VisibilityTimeout%time.Second != 0:
		return ProvisionPlan{}, bad("VisibilityTimeout", fmt.Sprintf("%v is not whole seconds", c.VisibilityTimeout))
	case c.MaxReceiveCount < 0 || c.MaxReceiveCount > 1000:
		return ProvisionPlan{}, bad("MaxReceiveCount", fmt.Sprintf("%d is not between 1 and 1000", c.MaxReceiveCount))
	case c.MaxReceiveCount > 0 && c.NoDeadLetter:
		return ProvisionPlan{}, bad("MaxReceiveCount", "is set with NoDeadLetter")
	}
	vis := c.VisibilityTimeout
	if vis == 0 {
		vis = DefaultVisibilityTimeout
	}
	attrs := map[string]string{"VisibilityTimeout": strconv.Itoa(int(vis / time.Second))}
	if fifo {
		attrs["FifoQueue"], attrs["ContentBasedDeduplication"] = "true", "false"
	}
	var p ProvisionPlan
	q := PlanQueue{Name: name, Attributes: attrs}
	if !c.NoDeadLetter {
		deadAttrs := map[string]string{"MessageRetentionPeriod": strconv.Itoa(int(DeadRetention / time.Second))}
		if fifo {
			deadAttrs["FifoQueue"], deadAttrs["ContentBasedDeduplication"] = "true", "false"
		}
		p.Queues = append(p.Queues, PlanQueue{Name: dead, Attributes: deadAttrs})
		q.DeadLetterQueue, q.MaxReceiveCount = dead, c.MaxReceiveCount
		if q.MaxReceiveCount == 0 {
			q.MaxReceiveCount = DefaultMaxReceiveCount
		}
	}
	p.Queues = append(p.Queues, q)
	return p, nil
}

// Provision creates the dead-letter queue and the queue of c, unless they exist, and returns the
// queue's URL in the report. It is idempotent. A queue that exists with other attributes (FIFO,
// ContentBasedDeduplication, VisibilityTimeout, the redrive policy) is left as it is, reported
// as a conflict, and the error, which wraps ErrConflict, says what differs. Errors of the SQS
// API are classified as Publish's are: an unreachable endpoint or refused credentials are
// marked outbox.Unavailable.
func Provision(ctx context.Context, c ProvisionConfig) (ProvisionReport, error) {
	var rep ProvisionReport
	p, err := c.Plan()
	if err != nil {
		return rep, err
	}
	tc := c.Transport.withDefaults()
	client, tr, err := newClient(ctx, tc)
	if err != nil {
		return rep, err
	}
	if tr != nil {
		defer tr.CloseIdleConnections()
	}
	var conflicts []string
	deadARN := ""
	for i, q := range p.Queues {
		attrs := q.Attributes
		kind := "queue"
		if q.DeadLetterQueue != "" {
			attrs = cloneAttrs(attrs)
			policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": deadARN, "maxReceiveCount": q.MaxReceiveCount})
			attrs["RedrivePolicy"] = string(policy)
		} else if i < len(p.Queues)-1 {
			kind = "dead-letter queue"
		}
		o := ProvisionObject{Kind: kind, Name: q.Name, Detail: queueDetail(q)}
		got, err := client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(q.Name)})
		var missing *types.QueueDoesNotExist
		switch {
		case err == nil:
			o.URL = aws.ToString(got.QueueUrl)
			have, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
				QueueUrl: got.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
			})
			if err != nil {
				return rep, provisionError("get attributes of "+q.Name, err)
			}
			if diff := attrDiff(have.Attributes, attrs); diff != "" {
				o.Action, o.Detail = "conflict", diff
				conflicts = append(conflicts, kind+" "+q.Name+": "+diff)
			} else {
				o.Action = "exists"
			}
			deadARN = have.Attributes[string(types.QueueAttributeNameQueueArn)]
		case errors.As(err, &missing):
			made, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(q.Name), Attributes: attrs})
			if err != nil {
				return rep, provisionError("create "+q.Name, err)
			}
			o.URL, o.Action = aws.ToString(made.QueueUrl), "created"
			if i < len(p.Queues)-1 {
				a, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
					QueueUrl: made.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
				})
				if err != nil {
					return rep, provisionError("get the ARN of "+q.Name, err)
				}
				deadARN = a.Attributes[string(types.QueueAttributeNameQueueArn)]
			}
		default:
			return rep, provisionError("look up "+q.Name, err)
		}
		rep.Objects = append(rep.Objects, o)
		if o.Action == "conflict" {
			break // the queue's redrive policy would name a dead-letter queue not as asked for
		}
	}
	if last := rep.Objects[len(rep.Objects)-1]; last.Kind == "queue" {
		rep.QueueURL = last.URL
	}
	if len(conflicts) > 0 {
		return rep, fmt.Errorf("sqs: provision: %s: %w (left as it is)", strings.Join(conflicts, "; "), ErrConflict)
	}
	return rep, nil
}

func provisionError(op string, err error) error {
	err = fmt.Errorf("sqs: provision: %s: %w", op, err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return outbox.Unavailable(err)
}

func cloneAttrs(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func queueDetail(q PlanQueue) string {
	d := []string{"standard"}
	if q.Attributes["FifoQueue"] == "true" {
		d[0] = "fifo, content-based deduplication off"
	}
	if v, ok := q.Attributes["VisibilityTimeout"]; ok {
		d = append(d, "visibility timeout "+v+"s")
	}
	if v, ok := q.Attributes["MessageRetentionPeriod"]; ok {
		d = append(d, "retention "+v+"s")
	}
	if q.DeadLetterQueue != "" {
		d = append(d, fmt.Sprintf("dead letters to %s after %d receives", q.DeadLetterQueue, q.MaxReceiveCount))
	}
	return strings.Join(d, ", ")
}

// attrDiff says how the attributes a queue has differ from those asked for. A missing FIFO
// attribute is "false", as SQS leaves it out of a standard queue's.
func attrDiff(have, want map[string]string) string {
	var d []string
	for _, k := range []string{"FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout", "MessageRetentionPeriod"} {
		w, asked := want[k]
		h := have[k]
		if !asked {
			if k == "FifoQueue" && h == "true" {
				d = append(d, "FifoQueue true, want false")
			}
			continue
		}
		if h == "" && (k == "FifoQueue" || k == "ContentBasedDeduplication") {
			h = "false"
		}
		if h != w {
			d = append(d, fmt.Sprintf("%s %s, want %s", k, h, w))
		}
	}
	if w, asked := want["RedrivePolicy"]; asked {
		if hp, wp := redrive(have["RedrivePolicy"]), redrive(w); hp != wp {
			if hp == "" {
				hp = "none"
			}
			d = append(d, fmt.Sprintf("RedrivePolicy %s, want %s", hp, wp))
		}
	}
	return strings.Join(d, ", ")
}

// redrive normalizes a RedrivePolicy: SQS returns maxReceiveCount as a number or a string.
func redrive(s string) string {
	if s == "" {
		return ""
	}
	var p map[string]any
	if json.Unmarshal([]byte(s), &p) != nil {
		return s
	}
	return fmt.Sprintf("%v after %v receives", p["deadLetterTargetArn"], p["maxReceiveCount"])
}
