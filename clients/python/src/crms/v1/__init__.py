"""Code generated from proto/crms/v1 by clients/python/buf.gen.yaml. DO NOT EDIT."""
