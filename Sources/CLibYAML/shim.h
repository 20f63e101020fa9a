// CLibYAML: libyaml's event parser (Debian libyaml-dev). YAMLValue builds
// documents straight from its events, refusing anchors, aliases, deep
// nesting and too many values as they appear.
#include <yaml.h>
