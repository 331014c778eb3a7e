"""What every layer shares: the record model and contract rules, one error tree, privacy, configuration,
products, Chinese wording and the manifest format. Imports no other package of ours."""
