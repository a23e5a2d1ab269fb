package outbox_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
)

// A Secret in a config must not show itself under any verb, in JSON, or wrapped in an error.
func TestSecretNeverShows(t *testing.T) {
	type config struct {
		User     string
		Password outbox.Secret
		Nested   struct{ Token outbox.Secret }
		ptr      *outbox.Secret
	}
	c := config{User: "app", Password: "hunter2-pw"}
	c.Nested.Token = "tok-s3cret"
	p := outbox.Secret("ptr-s3cret")
	c.ptr = &p
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%-8v"} {
		shown = append(shown, fmt.Sprintf(verb, c), fmt.Sprintf(verb, c.Password), fmt.Sprintf(verb, &c))
	}
	shown = append(shown, string(js), fmt.Errorf("connect: %v", c).Error(), errors.New(c.Password.String()).Error())
	for _, s := range shown {
		for _, secret := range []string{"hunter2", "tok-s3cret", "ptr-s3cret", "68756e74"} { // 68756e74: "hunt" in hex
			if strings.Contains(s, secret) {
				t.Errorf("%q shows %q", s, secret)
			}
		}
	}
	if !strings.Contains(string(js), `"Password":"xxxxx"`) || !strings.Contains(fmt.Sprintf("%+v", c), "Password:xxxxx") {
		t.Errorf("redacted forms: %s / %+v", js, c)
	}
	if c.Password.Reveal() != "hunter2-pw" || outbox.Secret("").String() != "" {
		t.Error("Reveal or the empty Secret")
	}
}
