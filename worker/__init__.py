"""The worker side: RQ workers that walk each job's model chain against Gemini and store results."""
