// CLibYAML: libyaml's event parser (Debian libyaml-dev), so YAML text can be
// screened for anchors, aliases and deep nesting before Yams composes it
// (composing expands aliases: a few hundred bytes can become gigabytes).
#include <yaml.h>
