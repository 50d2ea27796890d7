"""Configuration: option groups, each a frozen dataclass whose fields are flags and YAML keys.

`fields` defines an option and the `learns` mark; `loader` turns groups into flags and reads
`--config` YAML; `groups` holds the groups several verbs share. A verb's own group lives in
its package (`pipelines.train.options.TrainOptions`, ...).
"""
