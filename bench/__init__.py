"""The benchmark: outside the product, driving it as a user would (`make bench`)."""
