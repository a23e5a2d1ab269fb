package console_test

import (
	"fmt"
	"html"
	"regexp"
)

var regexpHref = regexp.MustCompile(`href="([^"]*)"`)

func htmlUnescape(s string) string { return html.UnescapeString(s) }

func toString(v any) string { return fmt.Sprint(v) }

func sprint(v any) string { return fmt.Sprintf("%v %+v %#v", v, v, v) }
