package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/tagpr/tagpr/configs"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/rewardmodel"
)

// runCfg is the effective config, read once per command by loadConfig: the
// file given with -c (default: the built-in configs/demo.yaml), then TAGPR_*
// environment variables, then flags.
var (
	runCfg    pipeline.RunConfig
	cfgSource string // the file it came from, for messages
	// cfgOverrides are the keys a variable or flag set over the file, and
	// which ("TAGPR_RUNTIME_THREADS", "--threads"), for messages.
	cfgOverrides []configOverride
)

// configOverride is one key a variable or a flag set.
type configOverride struct{ key, by string }

// configError puts where the config came from before a message about its
// values: the file, and the variable or flag behind any key the message
// names (a bad TAGPR_RUNTIME_SPINNING is not in the file).
func configError(err error) error {
	var by []string
	for _, o := range cfgOverrides {
		if mentionsKey(err.Error(), o.key) {
			by = append(by, o.key+" from "+o.by)
		}
	}
	if len(by) == 0 {
		return fmt.Errorf("config %s: %w", cfgSource, err)
	}
	return fmt.Errorf("config %s, %s: %w", cfgSource, strings.Join(by, ", "), err)
}

// configKeyAnnotation marks a flag that sets a config key.
const configKeyAnnotation = "tagpr.config_key"

// flagSetsKey makes flag name of fs set config key when given.
func flagSetsKey(fs *pflag.FlagSet, name, key string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("no flag --" + name)
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[configKeyAnnotation] = []string{key}
}

// envName is the variable that sets a key: TAGPR_ + the key in capitals
// with dots as underscores (runtime.threads → TAGPR_RUNTIME_THREADS).
func envName(key string) string {
	return "TAGPR_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// loadConfig reads the config strictly: an unknown key, a value of the
// wrong type (in the file, a variable or a flag) or an out-of-range runtime
// or log setting is refused, naming the key and where it came from.
func loadConfig(cmd *cobra.Command) error {
	v := viper.New()
	if cfgFile != "" {
		// viper reads more formats (.env, .ini, .hcl, .properties) than
		// the config is written in; they failed with its messages
		// ("'seed' expected type 'uint64'" for seed=3 in a .env).
		switch strings.ToLower(filepath.Ext(cfgFile)) {
		case ".yaml", ".yml", ".toml", ".json":
		default:
			return fmt.Errorf("config %s: want a .yaml, .yml, .toml or .json file (the run config's formats)", cfgFile)
		}
		v.SetConfigFile(cfgFile)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config %s: %w", cfgFile, err)
		}
		// JSON's parser keeps the last of a key given twice (a second
		// "stages" dropped the first), and keys are read without regard to
		// case, so YAML's Seed replaced seed.
		dupKey := map[string]func([]byte) (string, error){".json": jsonDuplicateKey, ".yaml": yamlDuplicateKey, ".yml": yamlDuplicateKey, ".toml": tomlDuplicateKey}
		if find := dupKey[strings.ToLower(filepath.Ext(cfgFile))]; find != nil {
			data, err := os.ReadFile(cfgFile)
			if err != nil {
				return fmt.Errorf("config %s: %w", cfgFile, err)
			}
			if dup, err := find(data); err != nil {
				return fmt.Errorf("config %s: %w", cfgFile, err)
			} else if dup != "" {
				return fmt.Errorf("config %s: key %s is given twice (keys are read without regard to case; the second would replace the first whole): keep one", cfgFile, dup)
			}
		}
		cfgSource = cfgFile
	} else {
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(configs.Demo)); err != nil {
			return fmt.Errorf("built-in config configs/demo.yaml: %w", err)
		}
		cfgSource = "configs/demo.yaml (built in)"
	}
	cfgOverrides = nil
	for _, k := range pipeline.ConfigKeys(pipeline.RunConfig{}) {
		name := envName(k.Key)
		raw, ok := os.LookupEnv(name)
		if !ok {
			continue
		}
		if k.Type.Kind() == reflect.Map {
			return fmt.Errorf("environment %s: %s is a map ({NAME: value, …}), which no variable sets: set it in the config file, or unset %s", name, k.Key, name)
		}
		val, err := parseTyped(raw, k.Type)
		if err != nil {
			return fmt.Errorf("environment %s=%q: %s wants %s: %v", name, raw, k.Key, describeType(k.Type), err)
		}
		v.Set(k.Key, val)
		cfgOverrides = append(cfgOverrides, configOverride{k.Key, name})
	}
	var flagErr error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		keys := f.Annotations[configKeyAnnotation]
		if len(keys) == 0 || flagErr != nil {
			return
		}
		val, err := flagValue(f)
		if err != nil {
			flagErr = fmt.Errorf("--%s: %w", f.Name, err)
			return
		}
		v.Set(keys[0], val)
		cfgOverrides = append(cfgOverrides, configOverride{keys[0], "--" + f.Name})
	})
	if flagErr != nil {
		return flagErr
	}
	cfg := pipeline.DefaultRunConfig()
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = false
		dc.DecodeHook = strictHook
	})
	if err != nil {
		return configError(errors.New(decodeMessage(err, pipeline.RunConfig{})))
	}
	if err := unknownConfigVariables(os.Environ(), cfg.Teacher.APIKeyEnv); err != nil {
		return configError(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg.Resolve(wd)
	if err := cfg.Runtime.Validate(); err != nil {
		return configError(err)
	}
	switch cfg.Log.Format {
	case "auto", "text", "json":
	default:
		return configError(fmt.Errorf("log.format: %q: want auto, text or json", cfg.Log.Format))
	}
	runCfg = cfg
	return nil
}

// jsonDuplicateKey is the first key a JSON object of data holds twice
// (keys compare without regard to case, as the config's do), as a dotted
// path; "" when none.
func jsonDuplicateKey(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(path string) (string, error)
	walk = func(path string) (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return "", nil
		}
		seen := map[string]bool{}
		for i := 0; dec.More(); i++ {
			sub := fmt.Sprintf("%s[%d]", path, i)
			if d == '{' {
				kt, err := dec.Token()
				if err != nil {
					return "", err
				}
				k, _ := kt.(string)
				if sub = k; path != "" {
					sub = path + "." + k
				}
				if seen[strings.ToLower(k)] {
					return sub, nil
				}
				seen[strings.ToLower(k)] = true
			}
			if dup, err := walk(sub); dup != "" || err != nil {
				return dup, err
			}
		}
		_, err = dec.Token() // the closing delimiter
		return "", err
	}
	return walk("")
}

// yamlDuplicateKey is jsonDuplicateKey for YAML, whose parser refuses only
// a key repeated with the same case.
func yamlDuplicateKey(data []byte) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", err
	}
	var walk func(n *yaml.Node, path string) string
	walk = func(n *yaml.Node, path string) string {
		seen := map[string]bool{}
		for i, c := range n.Content {
			sub := path
			switch n.Kind {
			case yaml.SequenceNode:
				sub = fmt.Sprintf("%s[%d]", path, i)
			case yaml.MappingNode:
				if i%2 == 0 { // a key; its value is next
					if sub = c.Value; path != "" {
						sub = path + "." + c.Value
					}
					if seen[strings.ToLower(c.Value)] {
						return sub
					}
					seen[strings.ToLower(c.Value)] = true
					if d := walk(n.Content[i+1], sub); d != "" {
						return d
					}
				}
				continue
			}
			if d := walk(c, sub); d != "" {
				return d
			}
		}
		return ""
	}
	return walk(&doc, ""), nil
}

// tomlDuplicateKey is jsonDuplicateKey for TOML, whose parser refuses only
// a key repeated with the same case (of two spellings, the one that sorts
// last is named).
func tomlDuplicateKey(data []byte) (string, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return "", err
	}
	var walk func(v any, path string) string
	walk = func(v any, path string) string {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			seen := map[string]bool{}
			for _, k := range keys {
				sub := k
				if path != "" {
					sub = path + "." + k
				}
				if seen[strings.ToLower(k)] {
					return sub
				}
				seen[strings.ToLower(k)] = true
				if d := walk(x[k], sub); d != "" {
					return d
				}
			}
		case []any:
			for i, e := range x {
				if d := walk(e, fmt.Sprintf("%s[%d]", path, i)); d != "" {
					return d
				}
			}
		}
		return ""
	}
	return walk(doc, ""), nil
}

// unknownConfigVariables refuses a TAGPR_* variable that reads as a config
// key (it starts with a config section: TAGPR_STAGES_, TAGPR_RUNTIME_, …) but
// sets none, such as a misspelt TAGPR_STAGES_SFT_STPES or an RL stage's
// TAGPR_STAGES_RL_GUIDED_BETA: ignored, the run would go on with the file's
// value. Other TAGPR_* variables (TAGPR_SHARD_COUNT, the teacher's key named
// by apiKeyEnv) are not config keys and pass.
func unknownConfigVariables(environ []string, apiKeyEnv string) error {
	known := map[string]bool{}
	var names []string
	sections := map[string]bool{}
	for _, k := range pipeline.ConfigKeys(pipeline.RunConfig{}) {
		known[envName(k.Key)] = true
		names = append(names, envName(k.Key))
		if i := strings.IndexByte(k.Key, '.'); i > 0 {
			sections[envName(k.Key[:i])+"_"] = true
		}
	}
	var bad []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if known[name] || name == apiKeyEnv || !strings.HasPrefix(name, "TAGPR_") {
			continue
		}
		for s := range sections {
			if strings.HasPrefix(name, s) {
				bad = append(bad, name)
				break
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	var near []string
	for _, name := range bad {
		if n := nearest(name, names); n != "" {
			near = append(near, name+" → "+n)
		}
	}
	suggest := ""
	if len(near) > 0 {
		suggest = " (did you mean: " + strings.Join(near, ", ") + "?)"
	}
	return fmt.Errorf("environment %s: no such config key%s (a variable sets KEY as TAGPR_ + KEY in capitals, dots as underscores: stages.sft.steps → TAGPR_STAGES_SFT_STEPS; `tagpr config print` lists the keys; the lists data.imports and stages.rl and the map stages.sft.task_weights are set in the file); check the spelling or unset it",
		strings.Join(bad, ", "), suggest)
}

// mentionsKey reports whether msg is about key: it names it whole, or its
// section and then its last part ("stages.sft: sft: lr -1" is about
// stages.sft.lr).
func mentionsKey(msg, key string) bool {
	if namesKey(msg, key) {
		return true
	}
	i := strings.LastIndexByte(key, '.')
	return i > 0 && namesKey(msg, key[:i]) && namesKey(msg, key[i+1:])
}

// namesKey reports whether msg names key as a whole key: "seed" is not
// named by "stages.sft.seed", "stages.rl" is by "stages.rl[0].lr".
func namesKey(msg, key string) bool {
	part := func(c byte) bool {
		return c == '.' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], key)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(key)
		if (start == 0 || !part(msg[start-1])) && (end == len(msg) || !part(msg[end])) {
			return true
		}
		i = start + 1
	}
}

// unknownKeysHint ends a message that names unknown keys.
const unknownKeysHint = " (unknown keys: check their spelling against `tagpr config print`)"

// decodeMessage puts mapstructure's error list on one line, each unknown
// key named whole with the nearest key its section has (root is the type
// decoded into).
func decodeMessage(err error, root any) string {
	msg := decodeLines(err, root)
	if strings.Contains(msg, "unknown key") && !strings.Contains(msg, unknownKeysHint) {
		msg += unknownKeysHint
	}
	return msg
}

// invalidKeys is mapstructure's line for unknown keys: the section's path
// (empty at the top level) and the keys.
var invalidKeys = regexp.MustCompile(`^'([^']*)' has invalid keys: (.+)$`)

func decodeLines(err error, root any) string {
	msg := strings.TrimPrefix(err.Error(), "decoding failed due to the following error(s):")
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if m := invalidKeys.FindStringSubmatch(line); m != nil {
			known := pipeline.ConfigSubkeys(root, m[1])
			var keys []string
			for _, k := range strings.Split(m[2], ", ") {
				full := k
				if m[1] != "" {
					full = m[1] + "." + k
				}
				if near := nearest(k, known); near != "" {
					full += " (did you mean " + near + "?)"
				}
				keys = append(keys, full)
			}
			word := "key"
			if len(keys) > 1 {
				word = "keys"
			}
			line = "unknown " + word + " " + strings.Join(keys, ", ")
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// nearest is the name in names closest to s (edits, a swap of neighbours
// counting one), when it is close enough to be a misspelling of it: at
// most a third of s's letters apart (at least 1, at most 3). "" when none.
func nearest(s string, names []string) string {
	best, bestD := "", 0
	limit := min(max(len(s)/3, 1), 3)
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d <= limit && (best == "" || d < bestD) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of two neighbouring letters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

var (
	durationType     = reflect.TypeOf(time.Duration(0))
	taskRefType      = reflect.TypeOf(pipeline.TaskRef(""))
	scaleRewardsType = reflect.TypeOf(pipeline.ScaleRewards(""))
	weightsType      = reflect.TypeOf(rewardmodel.Weights{})
)

// strictHook decodes what plain types do not say: durations only from
// strings ("90s"), task references from a LaMP number or a name, an RL
// stage's scale_rewards from a string or TRL's true/false, and whole
// numbers only into integer fields (JSON has only floats; 2.5 is refused,
// not cut to 2).
func strictHook(from, to reflect.Type, data any) (any, error) {
	switch {
	case to == durationType:
		s, ok := data.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration such as \"90s\" or \"2m\", got %v (%T)", data, data)
		}
		return time.ParseDuration(s)
	case to == scaleRewardsType:
		return pipeline.ScaleRewardsOf(data)
	case to == weightsType && from.Kind() == reflect.Map:
		// A guided stage's weights: a key left out keeps its default
		// (weights: {gamma: 0.2} is α=1, β=0.3, γ=0.2), not 0, which
		// silently dropped the task reward.
		w := rewardmodel.DefaultWeights()
		fields := func(from, to reflect.Type, data any) (any, error) {
			if to == weightsType {
				return data, nil // the map itself, decoded onto w's defaults
			}
			return strictHook(from, to, data)
		}
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &w, ErrorUnused: true, DecodeHook: fields})
		if err != nil {
			return nil, err
		}
		if err := dec.Decode(data); err != nil {
			return nil, fmt.Errorf("want weights {alpha, beta, gamma}: %s", decodeLines(err, rewardmodel.Weights{}))
		}
		return w, nil
	case to == taskRefType:
		switch x := data.(type) {
		case string:
			return pipeline.TaskRef(x), nil
		case int, int64, uint64:
			return pipeline.TaskRef(fmt.Sprint(x)), nil
		case float64:
			if x == math.Trunc(x) {
				return pipeline.TaskRef(strconv.FormatFloat(x, 'f', -1, 64)), nil
			}
		}
		return nil, fmt.Errorf("want a task such as 3, \"2N\" or \"LaMP_4\", got %v (%T)", data, data)
	case isInteger(to.Kind()) && (from.Kind() == reflect.Float64 || from.Kind() == reflect.Float32):
		f := reflect.ValueOf(data).Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v is not a whole number", f)
		}
		// A number too large for an integer (YAML reads it as a float) was
		// converted to whatever the conversion gave (seed 1e23 became 2⁶³).
		lo, hi := -math.Ldexp(1, to.Bits()-1), math.Ldexp(1, to.Bits()-1)
		if to.Kind() >= reflect.Uint && to.Kind() <= reflect.Uint64 {
			lo, hi = 0, math.Ldexp(1, to.Bits())
		}
		if f < lo || f >= hi {
			return nil, fmt.Errorf("%v does not fit a %s", f, to.Kind())
		}
	}
	return data, nil
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// parseTyped parses an environment value as the key's type, strictly.
func parseTyped(s string, t reflect.Type) (any, error) {
	switch {
	case t == durationType:
		return s, validateWith(time.ParseDuration(s))
	case t.Kind() == reflect.String:
		return s, nil
	case t.Kind() == reflect.Bool:
		return strconv.ParseBool(s)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return strconv.ParseInt(s, 10, 64)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return strconv.ParseUint(s, 10, 64)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return strconv.ParseFloat(s, 64)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var out []any
		for _, p := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(p))
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot be set from the environment")
}

func validateWith[T any](_ T, err error) error { return err }

// describeType names a key's type in messages.
func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (90s, 2m)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return "a non-negative integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice:
		return "a comma-separated list"
	}
	return "a string"
}

// flagValue is a given flag's value, typed as the flag is.
func flagValue(f *pflag.Flag) (any, error) {
	s := f.Value.String()
	switch f.Value.Type() {
	case "int", "int64":
		return strconv.ParseInt(s, 10, 64)
	case "uint64":
		return strconv.ParseUint(s, 10, 64)
	case "float64":
		return strconv.ParseFloat(s, 64)
	case "bool":
		return strconv.ParseBool(s)
	case "string":
		return s, nil
	}
	return nil, errors.New("flag type " + f.Value.Type() + " cannot set a config key")
}

func init() {
	configCmd := &cobra.Command{Use: "config", Short: "Inspect the effective configuration"}
	var fastDev bool
	printCmd := &cobra.Command{
		Use:   "print",
		Short: "Print the effective run config (file, then TAGPR_* environment, then flags) as YAML",
		Long: "Prints every key of the run config with the value a command would use: the file given with -c\n" +
			"(default: the built-in configs/demo.yaml), overridden by TAGPR_* variables (runtime.threads →\n" +
			"TAGPR_RUNTIME_THREADS), overridden by flags. Paths are shown absolute; where a 0 picks a value (a\n" +
			"stage seed derived from the run's seed, a chain filter default) the value is shown. A config whose\n" +
			"values `tagpr run` would refuse is printed all the same, then refused the same way (exit 1); the files\n" +
			"it names (data, policy, teacher, taxonomy) are checked when a run starts, not here.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "# config file: %s\n", cfgSource)
			enc := yaml.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent(2)
			shown := runCfg
			if fastDev {
				shown = shown.FastDevRun()
			}
			if err := enc.Encode(pipeline.ConfigMap(shown.Effective())); err != nil {
				return err
			}
			if err := enc.Close(); err != nil {
				return err
			}
			// Printing is for checking a config before a run: a value the
			// run would refuse must not pass here with exit 0.
			cfg := runCfg
			if err := cfg.Validate(); err != nil {
				return configError(err)
			}
			return nil
		},
	}
	printCmd.Flags().BoolVar(&fastDev, "fast-dev-run", false, "print the config that tagpr run --fast-dev-run runs (a handful of examples and steps, in OUT/fast_dev_run)")
	configCmd.AddCommand(printCmd)
	rootCmd.AddCommand(configCmd)
}
