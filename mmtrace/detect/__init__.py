"""mmtrace.detect"""
