"""Generated data sources from outside libraries (data.GENERATED names each scheme's generator)."""
