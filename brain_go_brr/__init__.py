"""brain-go-brr."""
