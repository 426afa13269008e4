// Package contract lists the settings dstream reads from its environment, so that the packaging checks can tell a
// real setting from a typo. Keep it in step with the envconfig struct in cmd/dstream.
package contract

import "strings"

// Prefix starts the name of every dstream environment variable.
const Prefix = "DSTREAM_"

// Settings maps each setting's name (without Prefix) to whether it is a secret. Secrets must never appear in a
// ConfigMap, a compose file's plain environment, or a log line.
var Settings = map[string]bool{
	"KAFKA_BROKERS":          false,
	"INPUT_TOPIC":            false,
	"OUTPUT_TOPIC":           false,
	"DEADLETTER_TOPIC":       false,
	"CONTROL_TOPIC":          false,
	"ON_TOPIC_RECREATED":     false,
	"SHARDS":                 false,
	"REDIS_ADDR":             false,
	"JOB":                    false,
	"JOB_ID":                 false,
	"BATCH_INTERVAL":         false,
	"WINDOW":                 false,
	"SLIDE":                  false,
	"TOP_N":                  false,
	"COUNTRIES_FILE":         false,
	"START_OFFSET":           false,
	"MAX_RATE_PER_PARTITION": false,
	"BACKPRESSURE":           false,
	"BACKPRESSURE_MIN_RATE":  false,
	"HTTP_ADDR":              false,
	"LEASE_TTL":              false,
	"SHUTDOWN_GRACE":         false,
	"LOG_LEVEL":              false,
	"GC_PERCENT":             false,
	"STATE_FORMAT":           false,
	"KAFKA_SASL_MECHANISM":   false,
	"KAFKA_SASL_USER":        false,
	"KAFKA_SASL_PASSWORD":    true,
	"KAFKA_TLS":              false,
	"KAFKA_TLS_CA_FILE":      false,
	"REDIS_USER":             false,
	"REDIS_PASSWORD":         true,
	"REDIS_TLS":              false,
	"REDIS_TLS_CA_FILE":      false,
}

// Defaults holds the documented default of the settings whose default the packaging checks compare against.
var Defaults = map[string]string{
	"BATCH_INTERVAL": "10s",
	"WINDOW":         "30s",
	"SLIDE":          "10s",
	"SHUTDOWN_GRACE": "30s",
	"HTTP_ADDR":      ":8080",
}

// Lookup reports whether env (a full variable name such as DSTREAM_TOP_N) is a dstream setting, and whether it is
// a secret.
func Lookup(env string) (known, secret bool) {
	name, ok := strings.CutPrefix(env, Prefix)
	if !ok {
		return false, false
	}
	secret, known = Settings[name]
	return known, secret
}
