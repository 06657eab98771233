// Command verdictreader reads the moderation service's outputs from a Go service: franz-go for
// Kafka, its pkg/sr for the schema registry, hamba/avro for Avro. It knows nothing of the
// moderation service but its contract (docs/reading.md).
//
//	go run ./verdictreader -bootstrap localhost:9092 -registry http://localhost:8081 \
//	    -topics moderation.verdicts,uploads.dlq -group my-service
//
// What every reader of these topics must do, and this one does:
//   - read_committed: franz-go defaults to read_uncommitted, which shows the records of aborted
//     transactions (the service's exactly_once mode aborts some, e.g. when it is restarted).
//   - Deduplicate: at_least_once delivery can write a verdict twice. A verdict's verdict_id is its
//     idempotency key (one per upload and policy version); a dead letter's is where its record came
//     from (source topic, partition, offset). This reader keeps the last keys in memory; a real
//     service upserts by verdict_id or keeps the keys it has applied with what it did.
//   - Decode by the writer schema the record names: each record carries a schema id (Confluent
//     framing); the schema is fetched once per id and cached. Fields this code does not know are
//     skipped, so newer verdict versions (added fields) are read too.
//   - Commit an offset only after its record was handled, so a crash re-reads, never skips.
//
// It prints one line per record, the same lines as examples/verdict_reader.py:
// "<upload_id>  <decision>  <check:label, ...>  (policy <version>)" for a verdict and
// "<upload_id>  DEAD      <error class>  (<topic>:<partition>:<offset>)" for a dead letter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Verdict is the part of a ModerationVerdict (any version) this reader uses. A nullable union
// ["null", T] is a *T: nil for null, else the value, unwrapped.
type Verdict struct {
	VerdictID     string   `avro:"verdict_id"`
	UploadID      string   `avro:"upload_id"`
	TenantID      string   `avro:"tenant_id"`
	Decision      string   `avro:"decision"` // ALLOW, REVIEW, BLOCK, ESCALATE
	Reasons       []Reason `avro:"reasons"`
	Csam          *Csam    `avro:"csam"`
	PolicyVersion string   `avro:"policy_version"`
	PolicyDigest  *string  `avro:"policy_digest"` // from version 2
	SourceTopic   string   `avro:"source_topic"`
	SourceOffset  int64    `avro:"source_offset"`
	TraceID       *string  `avro:"trace_id"`
}

// Reason is why a verdict is not ALLOW.
type Reason struct {
	Check     string   `avro:"check"`
	Label     string   `avro:"label"`
	Score     *float64 `avro:"score"`
	Threshold *float64 `avro:"threshold"`
	Detail    *string  `avro:"detail"`
}

// Csam is the known-CSAM hash match's result.
type Csam struct {
	Matched  bool    `avro:"matched"`
	HashType *string `avro:"hash_type"`
}

// DeadLetter is an input record the service could not moderate, kept whole.
type DeadLetter struct {
	OriginalKey     *[]byte `avro:"original_key"`
	SourceTopic     string  `avro:"source_topic"`
	SourcePartition int32   `avro:"source_partition"`
	SourceOffset    int64   `avro:"source_offset"`
	UploadID        *string `avro:"upload_id"`
	ErrorClass      string  `avro:"error_class"`
	ErrorMessage    string  `avro:"error_message"`
}

const (
	verdictName    = "moderation.events.ModerationVerdict"
	deadLetterName = "moderation.events.DeadLetter"
)

// writer is a schema the registry gave for an id: parsed once, kept by id.
type writer struct {
	schema avro.Schema
	name   string
}

// schemas caches writer schemas by id. Each is parsed with its own name cache: hamba/avro's
// default cache keys schemas by full name, and every version of ModerationVerdict has the same one.
type schemas struct {
	client *sr.Client
	byID   map[int]writer
}

func (s *schemas) get(ctx context.Context, id int) (writer, error) {
	if w, ok := s.byID[id]; ok {
		return w, nil
	}
	registered, err := s.client.SchemaByID(ctx, id)
	if err != nil {
		return writer{}, fmt.Errorf("schema id %d: %w", id, err)
	}
	if registered.Type != sr.TypeAvro || len(registered.References) > 0 {
		return writer{}, fmt.Errorf("schema id %d: not a self-contained Avro schema", id)
	}
	parsed, err := avro.ParseWithCache(registered.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return writer{}, fmt.Errorf("schema id %d: %w", id, err)
	}
	record, ok := parsed.(*avro.RecordSchema)
	if !ok || (record.FullName() != verdictName && record.FullName() != deadLetterName) {
		return writer{}, fmt.Errorf("schema id %d: neither a verdict nor a dead letter", id)
	}
	w := writer{schema: parsed, name: record.FullName()}
	s.byID[id] = w
	return w, nil
}

// seen remembers the last keys handled (a bounded set, oldest forgotten first).
type seen struct {
	keys  map[string]struct{}
	order []string
	next  int
}

func newSeen(capacity int) *seen {
	return &seen{keys: make(map[string]struct{}, capacity), order: make([]string, capacity)}
}

// add is false when key was handled already.
func (s *seen) add(key string) bool {
	if _, dup := s.keys[key]; dup {
		return false
	}
	if old := s.order[s.next]; old != "" {
		delete(s.keys, old)
	}
	s.order[s.next] = key
	s.next = (s.next + 1) % len(s.order)
	s.keys[key] = struct{}{}
	return true
}

func main() {
	bootstrap := flag.String("bootstrap", "localhost:9092", "Kafka bootstrap servers (comma-separated)")
	registry := flag.String("registry", "http://localhost:8081", "schema registry URL (Confluent-compatible API)")
	topics := flag.String("topics", "moderation.verdicts", "topics to read, comma-separated "+
		"(moderation.verdicts, moderation.review, moderation.escalations, uploads.dlq)")
	group := flag.String("group", "verdict-reader", "consumer group")
	maxRecords := flag.Int("max", 0, "stop after this many records (0: never)")
	idle := flag.Duration("idle-timeout", 0, "stop after this long without a record (0: never)")
	flag.Parse()
	if err := run(*bootstrap, *registry, strings.Split(*topics, ","), *group, *maxRecords, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "verdictreader:", err)
		os.Exit(1)
	}
}

func run(bootstrap, registry string, topics []string, group string, maxRecords int, idle time.Duration) error {
	rcl, err := sr.NewClient(sr.URLs(registry))
	if err != nil {
		return err
	}
	cache := &schemas{client: rcl, byID: map[int]writer{}}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), // never a record of an aborted transaction
		kgo.AutoCommitMarks(),                        // commit only what was marked as handled
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer func() { _ = cl.CommitMarkedOffsets(context.Background()) }()

	var header sr.ConfluentHeader
	done := newSeen(100_000)
	count := 0
	for maxRecords == 0 || count < maxRecords {
		fetches, timedOut := poll(cl, idle)
		if fetches.IsClientClosed() || (timedOut && fetches.NumRecords() == 0) {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "fetch error on %s/%d: %v\n", fe.Topic, fe.Partition, fe.Err)
			}
		}
		for _, rec := range fetches.Records() {
			if maxRecords > 0 && count >= maxRecords {
				break
			}
			if err := handle(context.Background(), cache, header, done, rec, &count); err != nil {
				// a record no schema decodes: report it and go on (the service never writes one)
				fmt.Fprintf(os.Stderr, "skipped %s/%d@%d: %v\n", rec.Topic, rec.Partition, rec.Offset, err)
			}
			cl.MarkCommitRecords(rec)
		}
	}
	return nil
}

// poll waits for records, at most idle (0: for ever); timedOut when the wait ran out.
func poll(cl *kgo.Client, idle time.Duration) (kgo.Fetches, bool) {
	if idle <= 0 {
		return cl.PollFetches(context.Background()), false
	}
	ctx, cancel := context.WithTimeout(context.Background(), idle)
	defer cancel()
	fetches := cl.PollFetches(ctx)
	return fetches, ctx.Err() != nil
}

func handle(ctx context.Context, cache *schemas, header sr.ConfluentHeader, done *seen, rec *kgo.Record, count *int) error {
	id, body, err := header.DecodeID(rec.Value)
	if err != nil {
		return err
	}
	w, err := cache.get(ctx, id)
	if err != nil {
		return err
	}
	switch w.name {
	case verdictName:
		var v Verdict
		if err := avro.Unmarshal(w.schema, body, &v); err != nil {
			return err
		}
		// a review copy or an escalation is the verdict again on another topic: the key is per topic
		if !done.add(rec.Topic + "\x00" + v.VerdictID) {
			return nil
		}
		reasons := make([]string, 0, len(v.Reasons))
		for _, r := range v.Reasons {
			reasons = append(reasons, r.Check+":"+r.Label)
		}
		shown := strings.Join(reasons, ", ")
		if shown == "" {
			shown = "-"
		}
		fmt.Printf("%s  %-8s  %s  (policy %s)\n", v.UploadID, v.Decision, shown, v.PolicyVersion)
	case deadLetterName:
		var d DeadLetter
		if err := avro.Unmarshal(w.schema, body, &d); err != nil {
			return err
		}
		where := fmt.Sprintf("%s:%d:%d", d.SourceTopic, d.SourcePartition, d.SourceOffset)
		if !done.add(rec.Topic + "\x00" + where) {
			return nil
		}
		upload := "-"
		if d.UploadID != nil {
			upload = *d.UploadID
		}
		fmt.Printf("%s  %-8s  %s  (%s)\n", upload, "DEAD", d.ErrorClass, where)
	}
	*count++
	return nil
}
