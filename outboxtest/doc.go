// Package outboxtest holds what every backend's tests share: the conformance suites
// (RunStoreSuite, RunTransportSuite) that state the Store and Transport contracts as tests, and a
// fault-injection kit. The in-memory store that passes the full suite is package store/memory.
//
// A backend's test calls the suite with a factory that returns a fresh, isolated instance for
// each test, and Features saying what the backend supports:
//
//	func TestStore(t *testing.T) {
//		outboxtest.RunStoreSuite(t, newHarness, outboxtest.StoreFeatures{Transactions: true, ...})
//	}
package outboxtest
