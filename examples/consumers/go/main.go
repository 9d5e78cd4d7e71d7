// Example consumer: decodes a recorded stream (one JSON payload per line) into typed events.
//
//	go run . EVENTS_JSONL
//
// The `type` tag picks the struct; unknown fields are an error (DisallowUnknownFields), so a payload
// this code does not describe stops the run with the reason. A real consumer reads from NATS.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

func newEvent(tag string) (any, error) {
	switch tag {
	case "task-appeared":
		return &TaskAppeared{}, nil
	case "task-status-changed":
		return &TaskStatusChanged{}, nil
	case "job-status-changed":
		return &JobStatusChanged{}, nil
	case "task-progress":
		return &TaskProgress{}, nil
	case "task-vanished":
		return &TaskVanished{}, nil
	case "call-finished":
		return &CallFinished{}, nil
	case "source-degraded":
		return &SourceDegraded{}, nil
	case "source-recovered":
		return &SourceRecovered{}, nil
	}
	return nil, fmt.Errorf("unknown event type %q", tag)
}

func decode(line []byte) (any, string, error) {
	var tagged struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &tagged); err != nil {
		return nil, "", err
	}
	event, err := newEvent(tagged.Type)
	if err != nil {
		return nil, "", err
	}
	decoder := json.NewDecoder(bytes.NewReader(line))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(event); err != nil {
		return nil, "", fmt.Errorf("%s: %w", tagged.Type, err)
	}
	return event, tagged.Type, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: consume EVENTS_JSONL")
		os.Exit(2)
	}
	file, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer file.Close()
	byType := map[string]int{}
	decoded := 0
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := bytes.TrimSpace(scanner.Bytes())
		if len(line) == 0 {
			continue
		}
		_, tag, err := decode(line)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		byType[tag]++
		decoded++
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]any{"decoded": decoded, "byType": byType})
	fmt.Println(string(out))
}
