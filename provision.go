package outbox

// ProvisionObject is one broker object a transport's Provision looked at (a stream, a queue, an
// exchange, a binding). Each transport's package names it ProvisionObject too and lists its
// kinds.
type ProvisionObject struct {
	// Kind says what the object is: "stream", "consumer", "queue", "exchange", "binding",
	// "dead-letter queue".
	Kind string `json:"kind"`
	// Name is the object's name as the broker knows it.
	Name string `json:"name"`
	// Action is "created", "exists", "conflict" for an object that exists with other settings
	// (left as it is), or what the transport did when the broker cannot tell ("bound").
	Action string `json:"action"`
	// URL is where the object is reached, when the broker gives it an address (an SQS queue).
	URL string `json:"url,omitempty"`
	// Detail says what the object is, or for a conflict what differs.
	Detail string `json:"detail,omitempty"`
}

// String is the line `outbox provision` prints: "created stream ORDERS (subjects outbox.>)",
// "exists: queue orders (quorum)".
func (o ProvisionObject) String() string {
	s := o.Action + " " + o.Kind + " " + o.Name
	if o.Action == "exists" {
		s = "exists: " + o.Kind + " " + o.Name
	}
	if o.Detail != "" {
		s += " (" + o.Detail + ")"
	}
	return s
}
