package console_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/memory"
	transport "github.com/txoutbox/outbox/transport/memory"
)

// chromiumPath finds the browser: OUTBOX_TEST_CHROMIUM, else chromium on the PATH (Debian's
// package, which scripts/services/chromium installs).
func chromiumPath() (string, error) {
	if p := outboxtest.ServiceAddr("OUTBOX_TEST_CHROMIUM", ""); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on the PATH (scripts/services/chromium start installs it)")
}

// browser starts a headless Chromium for the test, in a fresh profile, and returns a context of
// its first tab bounded by timeout. The browser is closed (and waited for) at cleanup.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		outboxtest.NeedService(t, "chromium", err)
	}
	profile := t.TempDir() // removed after the browser is gone: cleanups run last-in first-out
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox cannot start
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		if err := chromedp.Cancel(tab); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing the browser: %v", err)
		}
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
		cancelTimeout()
	})
	// Start the browser now, so a broken installation fails here and not in the first step.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return tab
}

// artifacts is where the test saves its screenshots: OUTBOX_TEST_ARTIFACTS/<test>, or a
// temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	root := outboxtest.ServiceAddr("OUTBOX_TEST_ARTIFACTS", "")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page as dir/name.png and logs its path.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// attr reads the attribute of the first element matching the CSS selector sel, once it is
// visible, into value.
func attr(sel, name string, value *string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			res, err := chromedp.AttributeValue(chromedp.CSS(sel), name)(ctx, t)
			if err != nil {
				return err
			}
			if !res.Exists {
				return errors.New(sel + " has no attribute " + name)
			}
			*value = res.Value
			return nil
		}),
	)
}

// step runs the actions within stepTimeout. When they fail, it saves a screenshot of the page as
// failed-NAME.png and logs the page's address and HTML, then fails the test.
func step(t *testing.T, ctx context.Context, dir, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	err := chromedp.Do(sctx, actions...)
	if err == nil {
		return
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	if png, serr := chromedp.Run(dctx, chromedp.FullScreenshot(100)); serr == nil {
		path := filepath.Join(dir, "failed-"+name+".png")
		if werr := os.WriteFile(path, png, 0o644); werr == nil {
			t.Logf("screenshot: %s", path)
		}
	}
	loc, _ := chromedp.Run(dctx, chromedp.Location())
	html, _ := chromedp.Run(dctx, chromedp.OuterHTML(css("html")))
	t.Fatalf("%s: %v\nat %s:\n%s", name, err, loc, html)
}

// stepTimeout bounds one step of a browser test: a page load and the waits on it.
const stepTimeout = 15 * time.Second

// css is a CSS selector, for the queries of chromedp.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// A real browser reads the overview, logs in, requeues one group of dead letters through the
// confirm step, and a running relay delivers them.
func TestBrowserRequeueGroup(t *testing.T) {
	ctx := browser(t, 60*time.Second)
	dir := artifacts(t)

	st := memory.New()
	ids := seedMemory(t, st, 1, mixed...)
	c := serve(t, config(st))
	base := c.url("")

	// The overview shows the counts, before any relay runs.
	var pending, deadN string
	row := `tr[data-outbox="orders"] `
	step(t, ctx, dir, "overview",
		chromedp.Navigate(base),
		attr(row+"td[data-pending]", "data-pending", &pending),
		attr(row+"td[data-dead]", "data-dead", &deadN),
	)
	if pending != "1" || deadN != "4" {
		t.Fatalf("overview shows %s pending and %s dead, want 1 and 4", pending, deadN)
	}
	screenshot(t, ctx, dir, "01-overview")

	broker := transport.New()
	relay, err := outbox.NewRelay(st, broker, outbox.Config{PollInterval: 20 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := relay.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := broker.WaitFor(ctx, 1); err != nil {
		t.Fatalf("the relay did not deliver the pending message: %v", err)
	}

	// Log in with the token: the pages then offer the log-out button.
	step(t, ctx, dir, "login",
		chromedp.Navigate(base+"login"),
		chromedp.WaitVisible(css(`#login input[name="token"]`)),
		chromedp.SendKeys(css(`#login input[name="token"]`), token),
		chromedp.Click(css(`#login button[type="submit"]`)),
		chromedp.WaitVisible(css(`form.inline button.link`)),
	)

	// The dead letters of one type, then the confirm step with their count.
	var shown, count string
	step(t, ctx, dir, "dead-letters",
		chromedp.Navigate(base+"outboxes/orders/dead?type=ORDER_PLACED"),
		attr(`#matches`, "data-shown", &shown),
	)
	if shown != "2" {
		t.Fatalf("the dead letters page shows %s of type ORDER_PLACED, want 2", shown)
	}
	screenshot(t, ctx, dir, "02-dead-letters")
	step(t, ctx, dir, "confirm",
		chromedp.Click(css(`p.actions a.button:not(.danger)`)),
		attr(`#count`, "data-count", &count),
		chromedp.WaitVisible(css(`#confirm button[type="submit"]`)),
	)
	if count != "2" {
		t.Fatalf("the confirm page counts %s, want 2", count)
	}
	screenshot(t, ctx, dir, "03-confirm")

	var done string
	step(t, ctx, dir, "requeue",
		chromedp.Click(css(`#confirm button[type="submit"]`)),
		attr(`#done`, "data-n", &done),
	)
	if done != "2" {
		t.Fatalf("the done page says %s requeued, want 2", done)
	}
	screenshot(t, ctx, dir, "04-requeued")

	// The running relay publishes the two requeued letters.
	if err := broker.WaitFor(ctx, 3); err != nil {
		t.Fatalf("the relay did not deliver the requeued letters: %v", err)
	}
	got := map[string]bool{}
	for _, m := range broker.Received() {
		got[m.ID] = true
	}
	if !got[ids[0]] || !got[ids[1]] {
		t.Fatalf("delivered %v, want the requeued %s and %s", got, ids[0], ids[1])
	}

	// And the overview shows it: nothing pending once the relay has acknowledged them, two dead.
	deadline := time.Now().Add(stepTimeout)
	for {
		step(t, ctx, dir, "overview-after",
			chromedp.Navigate(base),
			attr(row+"td[data-pending]", "data-pending", &pending),
			attr(row+"td[data-dead]", "data-dead", &deadN),
		)
		if pending == "0" && deadN == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overview shows %s pending and %s dead, want 0 and 2", pending, deadN)
		}
		time.Sleep(50 * time.Millisecond) // between polls of the condition, bounded by the deadline
	}
	screenshot(t, ctx, dir, "05-overview-after")
}
