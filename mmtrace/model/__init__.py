"""mmtrace.model"""
