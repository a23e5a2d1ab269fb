// Package outboxtest holds what every backend's tests share: the conformance suites
// (RunStoreSuite, RunTransportSuite) that state the Store and Transport contracts as tests, an
// in-memory Store that passes the full store suite, and a fault-injection kit.
//
// A backend's test calls the suite with a factory that returns a fresh, isolated instance for
// each test, and Features saying what the backend supports:
//
//	func TestStore(t *testing.T) {
//		outboxtest.RunStoreSuite(t, newHarness, outboxtest.StoreFeatures{Transactions: true, ...})
//	}
package outboxtest
