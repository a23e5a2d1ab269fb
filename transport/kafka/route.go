package kafka

import (
	"fmt"

	"github.com/txoutbox/outbox"
)

// router picks each message's topic: Routes by Type, then Route, then Topic.
type router struct {
	routes map[string]string
	route  func(*outbox.Message) string
	def    string
}

func newRouter(c Config) router {
	return router{routes: c.Routes, route: c.Route, def: c.Topic}
}

// topic returns the topic m goes to. Its errors are permanent: the same message would be
// routed the same way again.
func (r router) topic(m *outbox.Message) (string, error) {
	topic := r.routes[m.Type]
	if topic == "" && r.route != nil {
		topic = r.route(m)
		if topic != "" {
			if err := checkTopic(topic); err != nil {
				return "", outbox.Permanent(fmt.Errorf("kafka: message %s: Route returned a bad topic: %v", m.ID, err))
			}
		}
	}
	if topic == "" {
		topic = r.def
	}
	if topic == "" {
		return "", outbox.Permanent(fmt.Errorf("kafka: message %s: no topic for type %q (no route claims it and Topic is empty)", m.ID, m.Type))
	}
	return topic, nil
}
