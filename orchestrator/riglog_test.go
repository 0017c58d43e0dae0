package orchestrator

import (
	"io"
	"os"
)

func testLogOut() io.Writer {
	if os.Getenv("RIGLOG") != "" {
		return os.Stderr
	}
	return io.Discard
}
