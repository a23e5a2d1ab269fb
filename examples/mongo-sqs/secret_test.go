package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The SQS secret key never shows when the config is printed or marshalled.
func TestConfigHidesTheSecret(t *testing.T) {
	c := config{AccessKeyID: "AKIA-EXAMPLE", SecretKey: "s3cr3t-value"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.SecretKey), string(b)} {
		if strings.Contains(out, "s3cr3t-value") {
			t.Fatalf("the secret key shows in %q", out)
		}
	}
}
