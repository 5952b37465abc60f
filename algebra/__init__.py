"""Conservation laws of gradient flows: fields, brackets, ranks, laws, reports."""
