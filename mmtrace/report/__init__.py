"""mmtrace.report"""
