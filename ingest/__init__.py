"""The data contract: the project file, the table schemas, validate and import (README.md)."""
