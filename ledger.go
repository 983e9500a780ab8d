package offload

// LedgerPartitionKey is the ledger table's partition key: a string attribute
// holding the object key. Not "key", which is a DynamoDB reserved word and
// would need an expression placeholder in every condition.
const LedgerPartitionKey = "pk"
