"""Published genotypes, as data (schema nascore.genotype/1)."""
