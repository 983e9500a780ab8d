// Package offload holds the contracts that the on-host agent and the resolver
// share: how a file's path under the watch folder and a request's URL path map
// to an S3 object key (and which names are refused), the ledger's table schema,
// and the sentinel errors both sides test with errors.Is.
//
// The agent lives in package agent, the resolver in package lambda; neither
// imports the other, both import this one.
package offload
