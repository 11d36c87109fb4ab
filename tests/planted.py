"""A planted curation set, written for these tests: every class curation must catch or keep.

Each class is a list of instructions a teacher might propose (and, for some, the answer it would
give). The ground truth is the class; near-duplicate and borderline pairs are checked against
exact ROUGE-L (rouge_score) when the test builds them, so a change of wording here cannot
silently move a pair across the threshold.
"""

from __future__ import annotations

SEEDS = [
    ("Explain why the sky looks blue during the day.",
     "Sunlight scatters off air molecules; blue light scatters most, so it reaches us from "
     "every direction."),
    ("Give three tips for writing a clear cover letter.",
     "Address a named person, tie your experience to the job's needs, and keep it to one page."),
    ("Summarize the causes of the French Revolution in two sentences.",
     "Debt, food shortages and resentment of privilege weakened the monarchy. Enlightenment "
     "ideas gave the unrest a program."),
    ("Convert 72 degrees Fahrenheit to Celsius and show the steps.",
     "Subtract 32 to get 40, then multiply by 5/9: about 22.2 degrees Celsius."),
    ("Suggest a name for a bakery that specializes in sourdough bread.",
     "Rise and Crumb."),
    ("What is the difference between a list and a tuple in Python?",
     "A list is mutable and a tuple is not; tuples can be dictionary keys."),
]  # fmt: skip

# distinct tasks a good teacher proposes: all must be accepted
CLEAN = [
    "Describe the water cycle for a ten-year-old.",
    "List four renewable energy sources and one drawback of each.",
    "Write a haiku about autumn leaves falling in a quiet park.",
    "Explain how compound interest works with a simple example.",
    "Compare democracy and monarchy as systems of government.",
    "Draft a polite email declining a meeting invitation.",
    "What are the main symptoms of dehydration in adults?",
    "Recommend three classic novels for someone who enjoys mysteries.",
    "Outline a weekly workout plan for a beginner runner.",
    "Translate the phrase 'good morning' into Spanish and Italian.",
    "Why do cats purr, according to current research?",
    "Create a grocery list for a vegetarian lasagna.",
    "Define photosynthesis in one paragraph.",
    "How does a bill become a law in the United States?",
    "Give an analogy that explains how the internet routes data.",
    "Name five mammals that live in the ocean.",
    "Propose a fun team-building activity for a remote company.",
    "Explain the rules of chess castling.",
    "Rewrite this sentence in passive voice: The committee approved the budget.",
    "What causes earthquakes along tectonic plate boundaries?",
    "Write a limerick about a forgetful wizard.",
    "Estimate how many piano tuners work in Chicago and explain your reasoning.",
    "Suggest ways to reduce food waste at home.",
    "Describe the plot of Romeo and Juliet without spoilers about the ending.",
    "Solve for x: 3x + 7 = 22.",
    "Write a SQL query that counts orders per customer.",
    "How is weather different from climate?",
    "Give advice to a student preparing for a job interview.",
    "Classify these animals as reptiles or amphibians: frog, lizard, salamander, turtle.",
    "What is the capital of Australia, and why was it chosen?",
    "Invent a short riddle whose answer is a candle.",
    "Explain recursion to a programmer who knows only loops.",
    "Describe how vaccines train the immune system.",
    "Plan a three-day itinerary for a first visit to Kyoto.",
    "Argue for and against a four-day work week.",
    "Write a thank-you note to a neighbor who watered your plants.",
    "Explain what inflation is and how central banks respond to it.",
    "List the planets of the solar system in order from the sun.",
    "Give a recipe for a simple tomato soup.",
    "What are good habits for protecting online passwords?",
]

# (original, edited twin): exact ROUGE-L >= 0.7; exactly one of each pair may be accepted
NEAR_DUPLICATES = [
    ("Explain how a refrigerator keeps food cold.",
     "Explain how a refrigerator keeps food cool."),
    ("Give five tips for improving sleep quality.",
     "Give five tips for improving your sleep quality."),
    ("Write a short story about a robot who learns to paint.",
     "Write a short story about a robot that learns to paint."),
    ("List the advantages of learning a second language as an adult.",
     "List the advantages of learning a second language as a child."),
    ("Describe the main features of Gothic architecture.",
     "Describe the main features of Gothic cathedral architecture."),
    ("What is the boiling point of water at high altitude and why?",
     "What is the boiling point of water at high altitudes, and why?"),
    ("Summarize the benefits of regular exercise for mental health.",
     "Summarize the benefits of regular exercise for your mental health."),
    ("Explain the difference between viruses and bacteria.",
     "Explain the difference between bacteria and viruses."),
    ("Suggest a budget-friendly weekend trip near the mountains.",
     "Suggest a budget-friendly weekend trip in the mountains."),
    ("Write a product description for a reusable water bottle.",
     "Write a product description for a reusable steel water bottle."),
    ("How do bees communicate the location of flowers?",
     "How do honey bees communicate the location of flowers?"),
    ("Create a study schedule for a final exam in biology.",
     "Create a study schedule for a final exam in chemistry."),
]  # fmt: skip

# pairs that share a frame but are different tasks: 0.45 <= ROUGE-L < 0.7; both must be kept
BORDERLINE = [
    ("Write a short poem about the ocean at night.",
     "Write a short story about a lighthouse keeper."),
    ("Explain how solar panels convert sunlight into electricity.",
     "Explain how hydroelectric dams convert falling water into electricity."),
    ("List three ways to save money on groceries.",
     "List three ways to stay focused while studying."),
    ("What are the health benefits of drinking green tea?",
     "What are the health risks of drinking energy drinks?"),
    ("Describe the life cycle of a butterfly.",
     "Describe the daily routine of a medieval blacksmith."),
    ("Give an example of a metaphor and explain it.",
     "Give an example of dramatic irony from a famous play."),
    ("How do I make a budget spreadsheet for my household?",
     "How do I make friends after moving to a new city?"),
    ("Compare electric cars and hybrid cars for city driving.",
     "Compare electric bikes and scooters for city commuting."),
]  # fmt: skip

# text tasks whose teacher answers are refusals or non-answers: the answer must be rejected
REFUSED = [
    ("Explain the history of the printing press.",
     "I'm sorry, but I am unable to provide information on that topic."),
    ("Describe the rules of cricket in simple terms.",
     "Unfortunately I cannot assist with this particular request."),
    ("What were the main achievements of the Roman Empire?",
     "As an artificial intelligence, I do not have the ability to answer history questions."),
    ("Give me a packing list for a camping trip.",
     "I won't be able to help with that, but you could ask an outdoor store."),
    ("Suggest names for a golden retriever puppy.",
     "My apologies, but I'm not able to comply with this request."),
    ("How does a microwave oven heat food?",
     "I must decline to answer this question."),
    ("Write a birthday message for my grandmother.",
     "Sorry, I can't write personal messages."),
    ("Explain the offside rule in soccer.",
     "I am just a language model and cannot explain sports rules."),
    ("What is the tallest mountain in Africa?",
     "..."),
    ("Recommend a board game for a family of four.",
     "?!"),
    ("Describe how to change a flat bicycle tire.",
     "— — —"),
    ("Tell me about the discovery of penicillin.",
     "I do not feel comfortable providing that information."),
]  # fmt: skip

# tasks a text model cannot do (non-text input or output): all must be rejected
NON_TEXT = [
    "Draw a cartoon of a cat wearing a hat.",
    "Sketch a floor plan for a two-bedroom apartment.",
    "Paint a watercolor landscape of a mountain lake.",
    "Listen to the attached recording and transcribe what the speaker says.",
    "Look at the photo I uploaded and tell me what breed my dog is.",
    "Summarize the video linked above in three bullet points.",
    "Record yourself singing the national anthem.",
    "Based on the attached spreadsheet, which region had the highest sales?",
    "Describe what is happening in this picture.",
    "Create an illustration of a dragon flying over a castle.",
    "Take a photograph of the sunset and share it.",
    "Compose a melody and play it on the piano for me.",
    "Identify the bird in the image below.",
    "Watch this clip and count how many times the ball bounces.",
]

# non-English instructions (the seeds are English): all must be rejected
NON_ENGLISH = [
    "Erkläre, wie ein Regenbogen entsteht und warum er gebogen ist.",
    "Explique comment fonctionne la photosynthèse chez les plantes vertes.",
    "Describe brevemente la historia de la ciudad de Barcelona.",
    "Jelaskan perbedaan antara cuaca dan iklim dengan contoh sederhana.",
    "Bana iyi bir uyku için beş öneri ver.",
    "Hãy giải thích tại sao bầu trời có màu xanh vào ban ngày.",
    "Scrivi una breve poesia sull'estate al mare.",
    "Liste três vantagens de aprender a programar na escola.",
    "Beschrijf de belangrijkste oorzaken van de Eerste Wereldoorlog.",
    "Napisz krótki list z podziękowaniem dla nauczyciela.",
]

# a tenant's benchmark (test set), written for these tests
BENCHMARK = [
    "A train travels 120 miles in 2 hours. What is its average speed in miles per hour?",
    "Who wrote the novel Pride and Prejudice?",
    "If a shirt costs $25 and is discounted by 20%, what is the sale price?",
    "What is the chemical symbol for gold?",
    "Write a Python function that returns the factorial of a number n.",
    "Maria has 14 apples and gives 5 to her friend. How many apples does she have left?",
    "Which planet is known as the Red Planet?",
    "What is the sum of the interior angles of a hexagon?",
]

# proposals that leak the benchmark: verbatim, or lightly edited (a number or a name changed)
LEAKS = [
    "Who wrote the novel Pride and Prejudice?",
    "What is the chemical symbol for gold?",
    "A train travels 150 miles in 3 hours. What is its average speed in miles per hour?",
    "If a jacket costs $40 and is discounted by 20%, what is the sale price?",
    "Write a Python function that returns the factorial of a number k.",
    "Maria has 18 apples and gives 7 to her friend. How many apples does she have left?",
    "Which planet is known as the Red Planet in astronomy?",
    "What is the sum of the interior angles of an octagon?",
]
