package scripts

import (
	"os"
	"testing"

	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
)

// TestMain fails the run if a plugin process (TestTwins starts the
// aliases and lists plugins) outlives the tests.
func TestMain(m *testing.M) { os.Exit(pluginhosttest.Main(m)) }
