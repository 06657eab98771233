// Command producer writes UploadEvent records the way the upload service of a platform would:
// franz-go for Kafka, its pkg/sr for the schema registry, hamba/avro for Avro. It knows nothing
// of the moderation service but its contract (docs/producing.md).
//
//	go run ./producer -bootstrap localhost:9092 -registry http://localhost:8081 \
//	    -schema UploadEvent.avsc -tenant acme text:"hello there" file:cat.jpg url:https://cdn.example.com/a.png
//
// It registers nothing: the schema is registered once per release (`moderation-consumer schemas
// register`), and the producer only looks up the id the registry gave the schema it was written
// against (POST /subjects/<topic>-value). Each record is Confluent-framed (magic byte 0, the
// 4-byte schema id, the Avro body) and keyed by its upload_id, so one upload's records keep their
// order. It prints one line per acknowledged upload: "<upload_id> <media_type> <how>".
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Upload is an UploadEvent; a nullable union is a pointer (nil: null).
type Upload struct {
	UploadID      string            `avro:"upload_id"`
	TenantID      string            `avro:"tenant_id"`
	UserID        string            `avro:"user_id"`
	MediaType     string            `avro:"media_type"`
	MediaURL      *string           `avro:"media_url"`
	MediaBytes    *[]byte           `avro:"media_bytes"`
	Text          *string           `avro:"text"`
	ContentSHA256 *string           `avro:"content_sha256"`
	ContentType   *string           `avro:"content_type"`
	SizeBytes     *int64            `avro:"size_bytes"`
	CreatedAt     time.Time         `avro:"created_at"`
	Metadata      map[string]string `avro:"metadata"`
}

// inlineLimit is the service's default processing.inline_media_limit_bytes: larger media goes by URL.
const inlineLimit = 1_000_000

func main() {
	bootstrap := flag.String("bootstrap", "localhost:9092", "Kafka bootstrap servers (comma-separated)")
	registry := flag.String("registry", "http://localhost:8081", "schema registry URL (Confluent-compatible API)")
	topic := flag.String("topic", "uploads", "the service's input topic")
	schemaPath := flag.String("schema", "UploadEvent.avsc", "the UploadEvent schema this producer was written against")
	tenant := flag.String("tenant", "demo", "tenant id (1-128 of A-Z a-z 0-9 . _ -, first a letter or digit)")
	user := flag.String("user", "user-1", "uploading user id")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: producer [flags] text:<text> | file:<image path> | url:<image URL> ...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*bootstrap, *registry, *topic, *schemaPath, *tenant, *user, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

func run(bootstrap, registry, topic, schemaPath, tenant, user string, specs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	text, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	rcl, err := sr.NewClient(sr.URLs(registry))
	if err != nil {
		return err
	}
	// Look the schema up, never register it: auto-registration is off in production.
	subject := topic + "-value" // TopicNameStrategy
	// Normalize: the registry compares the parsed schema, not its text (Apicurio compares texts
	// exactly without it, and the release pipeline registered another formatting of the same schema).
	lookup := sr.WithParams(ctx, sr.Normalize)
	registered, err := rcl.LookupSchema(lookup, subject, sr.Schema{Schema: string(text), Type: sr.TypeAvro})
	if err != nil {
		return fmt.Errorf("%s has no schema like %s (run `moderation-consumer schemas register`): %w",
			subject, schemaPath, err)
	}
	schema, err := avro.ParseWithCache(registered.Schema.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return err
	}
	var header sr.ConfluentHeader

	uploads := make([]Upload, 0, len(specs))
	hows := make([]string, 0, len(specs))
	for _, spec := range specs {
		u, how, err := uploadOf(spec, tenant, user)
		if err != nil {
			return err
		}
		uploads = append(uploads, u)
		hows = append(hows, how)
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent by default
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	records := make([]*kgo.Record, 0, len(uploads))
	for i := range uploads {
		body, err := avro.Marshal(schema, &uploads[i])
		if err != nil {
			return err
		}
		value, err := header.AppendEncode(nil, registered.ID, nil)
		if err != nil {
			return err
		}
		records = append(records, &kgo.Record{
			Key:   []byte(uploads[i].UploadID), // the contract's key: the upload id, UTF-8
			Value: append(value, body...),
		})
	}
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return err
	}
	for i, u := range uploads {
		fmt.Printf("%s %s %s\n", u.UploadID, u.MediaType, hows[i])
	}
	return nil
}

// uploadOf makes one upload from "text:<text>", "file:<path>" (inline bytes) or "url:<URL>".
func uploadOf(spec, tenant, user string) (Upload, string, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return Upload{}, "", fmt.Errorf("%q: expected text:, file: or url:", spec)
	}
	u := Upload{
		UploadID:  "up-" + randomHex(8),
		TenantID:  tenant,
		UserID:    user,
		CreatedAt: time.Now(),
		Metadata:  map[string]string{"producer": "go-example"},
	}
	switch kind {
	case "text":
		u.MediaType = "TEXT"
		u.Text = &arg
		return u, "text", nil
	case "file":
		data, err := os.ReadFile(arg)
		if err != nil {
			return Upload{}, "", err
		}
		if len(data) > inlineLimit {
			return Upload{}, "", fmt.Errorf("%s: %d bytes is over the inline limit: send a url: instead", arg, len(data))
		}
		sum := sha256.Sum256(data)
		digest, ctype, size := hex.EncodeToString(sum[:]), http.DetectContentType(data), int64(len(data))
		if !strings.HasPrefix(ctype, "image/") {
			return Upload{}, "", errors.New(arg + ": not an image (" + ctype + ")")
		}
		u.MediaType = "IMAGE"
		if ctype == "image/gif" {
			u.MediaType = "GIF"
		}
		u.MediaBytes, u.ContentSHA256, u.ContentType, u.SizeBytes = &data, &digest, &ctype, &size
		return u, "inline", nil
	case "url":
		ctype := "image/jpeg"
		if strings.HasSuffix(strings.ToLower(arg), ".png") {
			ctype = "image/png"
		}
		u.MediaType, u.MediaURL, u.ContentType = "IMAGE", &arg, &ctype
		return u, "url", nil
	}
	return Upload{}, "", fmt.Errorf("%q: expected text:, file: or url:", spec)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
