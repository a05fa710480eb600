package tokenize

import "time"

// SetChatNow sets the clock of templates that write today's date (Llama
// 3.2's) and returns a function restoring it.
func SetChatNow(now func() time.Time) (restore func()) {
	old := chatNow
	chatNow = now
	return func() { chatNow = old }
}
